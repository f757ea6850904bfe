"""The co-search evidence of docs/search.md: A3C-S beside the hand-designed agent with an
accelerator-only search (baseline a) and the sequential NAS-then-accelerator search
(baseline b), same budget, several seeds; then the Pareto plot and a summary table.

    python experiments/cosearch_evidence.py --config experiments/configs/cosearch_breakout.yaml \
        --out experiments/results/cosearch_breakout --seeds 0 1 2 --jobs 2

Runs are `a3cs search` processes (at most ``--jobs`` at a time); a finished run is skipped
and an interrupted one resumed, so the script can be re-run after a kill.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from a3cs.results import read_results
from a3cs_common.io import atomic_write_text

#: Compared runs: label -> the ``a3cs search`` arguments that make it.
VARIANTS: dict[str, list[str]] = {
    **{method: ["--method", method] for method in ("a3cs", "a3cs_no_distill", "hand_designed",
                                                    "sequential", "random", "evolution")},
    # evolution scored by the distillation proxy, each trial's network on its own searched
    # accelerator (the ranking study's estimator; docs/search.md)
    "evolution_distill": ["--method", "evolution", "--set", "proxy.kind=distill",
                          "--set", "proxy.hardware=searched"],
}
METHODS = ("a3cs", "hand_designed", "sequential")  # the first evidence's


def run_one(config: str, out: Path, label: str, seed: int) -> str:
    run_dir = out / f"{label}_s{seed}"
    if (run_dir / "results.json").is_file():
        return f"{run_dir}: done before"
    command = [sys.executable, "-m", "a3cs", "search", config, *VARIANTS[label],
               "--seed", str(seed), "--out", str(run_dir), "--quiet"]
    if (run_dir / "state.json").is_file():
        command.append("--resume")
    started = time.time()
    with (out / f"{label}_s{seed}.log").open("a") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT)
    return f"{run_dir}: exit {code} after {time.time() - started:.0f} s"


def summarise(out: Path) -> str:
    labelled = [(p.parent.name.rpartition("_s")[0], row)
                for p in sorted(out.glob("*/results.json")) for row in read_results(p.parent)]
    lines = ["| method | seeds | test score (mean +- std over seeds) | FPS (mean +- std) | "
             "latency (us) | energy (uJ) | weights | FPS vs hand-designed |",
             "|---|---|---|---|---|---|---|---|"]
    hand = [r.fps for label, r in labelled if label == "hand_designed"]
    for method in VARIANTS:
        mine = [r for label, r in labelled if label == method]
        if not mine:
            continue
        scores = [r.score_mean for r in mine]
        fps = [r.fps for r in mine]

        def ms(values: list[float], fmt: str = ".2f") -> str:
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            return f"{statistics.mean(values):{fmt}} +- {spread:{fmt}}"

        ratio = (f"{statistics.mean(fps) / statistics.mean(hand):.2f}x" if hand else "-")
        lines.append(
            f"| {method} | {len(mine)} | {ms(scores)} | {ms(fps, ',.0f')} | "
            f"{statistics.mean(r.latency_s for r in mine) * 1e6:.2f} | "
            f"{statistics.mean(r.energy_pj or 0.0 for r in mine) * 1e-6:.3f} | "
            f"{statistics.mean(r.params for r in mine):,.0f} | {ratio} |")
    lines.append("")
    lines.append("Per run: " + "; ".join(
        f"{label} s{r.seed}: {r.score_mean:.2f}, {r.fps:,.0f} FPS, {r.wall_time_s / 60:.0f} min"
        for label, r in labelled))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(VARIANTS),
                        help="the runs compared (labels: " + "; ".join(
                            f"{k}: {' '.join(v)}" for k, v in VARIANTS.items()) + ")")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(method, seed) for seed in args.seeds for method in args.methods]
    with ThreadPoolExecutor(args.jobs) as pool:
        for message in pool.map(lambda job: run_one(args.config, out, *job), jobs):
            print(message, flush=True)
    subprocess.call([sys.executable, "-m", "a3cs", "plot", str(out), "--x", "fps", "--out",
                     str(out / "pareto_fps"), "--title", "MinAtar Breakout: test score vs FPS "
                     "on the searched ZC706 accelerator"])
    table = summarise(out)
    atomic_write_text(out / "summary.md", table + "\n")
    print(table)
    print(json.dumps({"summary": str(out / "summary.md"), "plot": str(out / "pareto_fps.png")}))


if __name__ == "__main__":
    main()
