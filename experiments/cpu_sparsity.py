"""Dense vs unstructured-sparse (scipy CSR) vs 1xN (scipy BSR with (N, 1) blocks) latency
across sparsity, measured on this machine: does 1xN beat unstructured sparsity here, as the
1xN paper found on an ARM Cortex-A7?

    python experiments/cpu_sparsity.py [--out experiments/results] [--rounds 12]

Every kernel of every layer is timed in one interleaved run with the method of
accelerator_model.cpu_kernels (one thread, canary-corrected medians).  Writes
cpu_sparsity.csv and cpu_sparsity.png/.svg, and prints the latencies and the CSR / 1xN ratios.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from a3cs_common.cli import OneLineParser, int_at_least, script_main
from a3cs_common.io import atomic_write_text, check_output_path, save_figure
from accelerator_model.cpu_kernels import TimingMethod, make_kernel, time_kernels
from hw_sim.workload import Conv2d, Linear

SPARSITIES = (0.0, 0.25, 0.5, 0.625, 0.75, 0.875, 0.9375)
NS = (2, 4, 8)
LAYERS: dict[str, dict] = {
    "MinAtar FC 1024->128": dict(kind="linear", in_features=1024, out_features=128),
    "FC 4096->512": dict(kind="linear", in_features=4096, out_features=512),
    "conv 16->32 3x3, 10x10": dict(kind="conv2d", in_channels=16, out_channels=32,
                                   in_height=10, in_width=10, kernel_size=3, padding=1),
    "conv 32->64 3x3, 14x14": dict(kind="conv2d", in_channels=32, out_channels=64,
                                   in_height=14, in_width=14, kernel_size=3, padding=1),
}


def _layer(geometry: dict, weight_format: dict) -> Conv2d | Linear:
    fields = {k: v for k, v in geometry.items() if k != "kind"}
    cls = Linear if geometry["kind"] == "linear" else Conv2d
    return cls.model_validate({"name": "x", **fields, "weight_format": weight_format})


def measure(rounds: int, samples: int) -> list[dict]:
    """Time every (layer, format, sparsity) kernel; one row per kernel (latency in us)."""
    rows, kernels = [], []
    for name, geometry in LAYERS.items():
        rows.append({"layer": name, "format": "dense", "sparsity": 0.0})
        kernels.append(make_kernel(_layer(geometry, {"type": "dense"})))
        for s in SPARSITIES:
            rows.append({"layer": name, "format": "csr", "sparsity": s})
            kernels.append(make_kernel(_layer(geometry, {"type": "dense"}),
                                       csr_density=1 - s))
            for n in NS:
                fmt = {"type": "one_by_n", "n": n, "density": 1 - s}
                rows.append({"layer": name, "format": f"1x{n}", "sparsity": s})
                kernels.append(make_kernel(_layer(geometry, fmt)))
    from tqdm import tqdm

    with tqdm(total=len(kernels) * (rounds + 1), unit="kernel-round") as bar:
        run = time_kernels([k.run for k in kernels],
                           TimingMethod(rounds=rounds, samples=samples), progress=bar.update)
    for row, timing in zip(rows, run.timings, strict=True):
        row["latency_us"] = timing.latency_s * 1e6
        row["spread"] = timing.spread
    return rows


def plot(rows: list[dict], stem: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(LAYERS), figsize=(4.2 * len(LAYERS), 3.8), sharey=False)
    styles = {"csr": ("k", "o", "unstructured (CSR)"), "1x2": ("C0", "s", "1x2 (BSR)"),
              "1x4": ("C1", "^", "1x4 (BSR)"), "1x8": ("C2", "v", "1x8 (BSR)")}
    for ax, name in zip(axes, LAYERS, strict=True):
        dense = next(r["latency_us"] for r in rows if r["layer"] == name
                     and r["format"] == "dense")
        ax.axhline(dense, color="C3", lw=1.5, label="dense (torch)")
        for fmt, (color, marker, label) in styles.items():
            pts = [(r["sparsity"], r["latency_us"]) for r in rows
                   if r["layer"] == name and r["format"] == fmt]
            ax.plot([p[0] * 100 for p in pts], [p[1] for p in pts], color=color,
                    marker=marker, ms=4, label=label)
        ax.set(yscale="log", xlabel="weight sparsity (%)", title=name)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("latency per call (us), 1 thread")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, stem)


def summary(rows: list[dict]) -> str:
    """Per layer and sparsity: dense, CSR and 1xN latencies, and CSR / 1xN."""
    lines = [f"{'layer':26s}{'sparsity':>9s}{'dense':>9s}{'CSR':>9s}"
             + "".join(f"{f'1x{n}':>9s}" for n in NS)
             + "".join(f"{f'CSR/1x{n}':>10s}" for n in NS)]
    for name in LAYERS:
        dense = next(r["latency_us"] for r in rows if r["layer"] == name
                     and r["format"] == "dense")
        for s in SPARSITIES:
            at = {r["format"]: r["latency_us"] for r in rows
                  if r["layer"] == name and r["sparsity"] == s and r["format"] != "dense"}
            lines.append(f"{name:26s}{s:9.1%}{dense:9.1f}{at['csr']:9.1f}"
                         + "".join(f"{at[f'1x{n}']:9.1f}" for n in NS)
                         + "".join(f"{at['csr'] / at[f'1x{n}']:10.2f}" for n in NS))
    return "\n".join(lines)


@script_main
def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="experiments/results", help="output folder")
    parser.add_argument("--rounds", type=int_at_least(1), default=12,
                        help="interleaved timing rounds")
    parser.add_argument("--samples", type=int_at_least(1), default=4,
                        help="samples per kernel and round")
    args = parser.parse_args(argv)
    out = check_output_path(args.out, field="--out", kind="directory")  # before the timing
    rows = measure(args.rounds, args.samples)
    header = "layer,format,sparsity,latency_us,spread"
    atomic_write_text(out / "cpu_sparsity.csv", "\n".join(
        [header] + [f'"{r["layer"]}",{r["format"]},{r["sparsity"]},{r["latency_us"]:.3f},'
                    f"{r['spread']:.3f}" for r in rows]) + "\n")
    paths = plot(rows, out / "cpu_sparsity")
    print(summary(rows))
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"load average at the end: {load}")
    print(f"wrote {out / 'cpu_sparsity.csv'}, " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
