"""Fidelity of the analytical accelerator model against hw_sim's event engine.

Draws random (layer, configuration, format) pairs (:func:`accelerator_model.fidelity.
sample_pairs`: DRL-sized and larger CNN layers, dense / block-circulant / 1xN, ws / is / os,
finite and unlimited DRAM bandwidth, buffers from far too small to all-resident), runs each on
hw_sim and on the batched model, and reports the mean and max absolute % error of latency
(total cycles) and energy, and the Spearman rank correlation, overall and per group.  Pairs
hw_sim refuses (a buffer too small for one tile) are checked to be refused by the model too.

Writes experiments/results/model_fidelity.{json,md} and the predicted-vs-simulated scatter
plot docs/figures/model_fidelity.{png,svg}.

    python experiments/validate_model.py              # 600 pairs, seed 0 (about 1 minute)
    python experiments/validate_model.py --samples 2000 --seed 1
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import spearmanr
from tqdm import tqdm

from a3cs_common.cli import OneLineParser, int_at_least, script_main, seed_int
from a3cs_common.io import atomic_write_text, check_output_path, save_figure
from accelerator_model.fidelity import FORMATS, Comparison, compare, refused_agreement, sample_pairs

REPO = Path(__file__).resolve().parents[1]
COLOURS = {"dense": "tab:blue", "block_circulant": "tab:orange", "one_by_n": "tab:green",
           "n_m": "tab:purple"}


def _errors(c: Comparison) -> tuple[np.ndarray, np.ndarray]:
    latency = np.abs(c.model_cycles - c.sim_cycles) / c.sim_cycles * 100
    energy = np.abs(c.model_energy_pj - c.sim_energy_pj) / c.sim_energy_pj * 100
    return latency, energy


def table(c: Comparison) -> list[dict]:
    """Rows: all pairs, then per format, size class, dataflow and bandwidth."""
    lat, en = _errors(c)
    groups = [("all", np.ones(len(lat), dtype=bool))]
    groups += [(f"format {f}", c.formats == f) for f in FORMATS]
    groups += [(f"{s} layers", c.size_classes == s) for s in ("drl", "cnn")]
    groups += [(f"dataflow {d}", c.dataflows == d) for d in ("ws", "is", "os")]
    groups += [("finite bandwidth", c.finite_bandwidth), ("unlimited bandwidth",
                                                          ~c.finite_bandwidth)]
    rows = []
    for name, mask in groups:
        if not mask.any():
            continue
        rows.append({
            "group": name, "pairs": int(mask.sum()),
            "latency_mean_abs_err_pct": float(lat[mask].mean()),
            "latency_max_abs_err_pct": float(lat[mask].max()),
            "energy_mean_abs_err_pct": float(en[mask].mean()),
            "energy_max_abs_err_pct": float(en[mask].max()),
            "latency_spearman": float(spearmanr(c.model_cycles[mask], c.sim_cycles[mask])[0])
            if mask.sum() > 2 else float("nan"),
            "energy_spearman": float(spearmanr(c.model_energy_pj[mask],
                                               c.sim_energy_pj[mask])[0])
            if mask.sum() > 2 else float("nan"),
            "exact_latency_share": float((c.model_cycles[mask] == c.sim_cycles[mask]).mean()),
        })
    return rows


def markdown(rows: list[dict]) -> str:
    head = ("| group | pairs | latency err mean % | latency err max % | energy err mean % | "
            "energy err max % | Spearman latency | Spearman energy | exact latency |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    return head + "".join(
        f"| {r['group']} | {r['pairs']} | {r['latency_mean_abs_err_pct']:.3f} | "
        f"{r['latency_max_abs_err_pct']:.2f} | {r['energy_mean_abs_err_pct']:.3f} | "
        f"{r['energy_max_abs_err_pct']:.2f} | {r['latency_spearman']:.5f} | "
        f"{r['energy_spearman']:.5f} | {100 * r['exact_latency_share']:.0f} % |\n"
        for r in rows)


def scatter(c: Comparison, stem: Path) -> list[Path]:
    """Predicted vs simulated latency and energy, log axes, one colour per format."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, sim, model, what in ((axes[0], c.sim_cycles, c.model_cycles, "latency (cycles)"),
                                 (axes[1], c.sim_energy_pj, c.model_energy_pj, "energy (pJ)")):
        for fmt in FORMATS:
            mask = c.formats == fmt
            ax.scatter(sim[mask], model[mask], s=9, alpha=0.6, color=COLOURS[fmt],
                       label=f"{fmt} ({mask.sum()})")
        lo, hi = min(sim.min(), model.min()), max(sim.max(), model.max())
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, ls="--", label="y = x")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"hw_sim event engine: {what}")
        ax.set_ylabel(f"analytical model: {what}")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(f"accelerator_model vs hw_sim on {len(sim)} random (layer, configuration, "
                 "format) pairs")
    fig.tight_layout()
    return save_figure(fig, stem, dpi=130)


@script_main
def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int_at_least(3), default=600,
                        help="runnable pairs (default 600)")
    parser.add_argument("--seed", type=seed_int, default=0)
    parser.add_argument("--results", default=str(REPO / "experiments/results"),
                        help="folder of model_fidelity.json/.md")
    parser.add_argument("--figures", default=str(REPO / "docs/figures"),
                        help="folder of model_fidelity.png/.svg")
    args = parser.parse_args(argv)
    # the outputs' folders are checked before the pairs are simulated, not after
    check_output_path(args.results, field="--results", kind="directory")
    check_output_path(args.figures, field="--figures", kind="directory")
    runnable, refused = sample_pairs(args.samples, seed=args.seed)
    with tqdm(total=len(runnable), desc="hw_sim", unit="pair") as bar:
        c = compare(runnable, progress=bar.update)
    if not c.model_valid.all():
        print(f"model refused {int((~c.model_valid).sum())} pairs hw_sim runs", file=sys.stderr)
        return 1
    rows = table(c)
    agreement = refused_agreement(refused)
    report = {
        "samples": len(runnable), "seed": args.seed, "rows": rows,
        "refused_by_hw_sim": len(refused), "refused_also_by_model": agreement,
        "hw_sim_seconds": c.sim_seconds, "model_seconds": c.model_seconds,
    }
    results = Path(args.results)
    atomic_write_text(results / "model_fidelity.json", json.dumps(report, indent=2) + "\n")
    text = markdown(rows)
    atomic_write_text(results / "model_fidelity.md", text)
    figures = scatter(c, Path(args.figures) / "model_fidelity")
    print(text)
    print(f"hw_sim refused {len(refused)} pairs; the model refused {100 * agreement:.1f} % of "
          f"them.  hw_sim {c.sim_seconds:.2f} s, model {c.model_seconds:.3f} s.")
    print("wrote", results / "model_fidelity.json", results / "model_fidelity.md",
          *figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
