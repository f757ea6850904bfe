"""The distillation ablation of finished co-search runs (issue 21, item 5): each run's chosen
agent retrained from scratch by the same config without its teacher, evaluated as the search
evaluated the distilled one.

    python experiments/distill_ablation.py SWEEP_DIR [--jobs N] [--threads N]

For each run directory under SWEEP_DIR (an ``a3cs search`` run with ``retrain/config.yaml``
and ``eval.json``) it runs, resumably (a killed run continues from its checkpoint)::

    a3cs train --config RUN/retrain/config.yaml --no-teacher --out RUN/retrain_no_distill
    a3cs evaluate RUN/retrain_no_distill/checkpoint.pt --episodes E \\
        --seed 10000+S --policy-seed S --format json        # -> RUN/retrain_no_distill/eval.json

(E: the search's ``budget.eval_episodes``, S: its seed, so the two scores differ only by the
teacher), then writes ``distill_ablation.md``, ``.csv``, ``.json`` and a plot
``distill_ablation.png``/``.svg`` in SWEEP_DIR: per game, the mean +- std over seeds with and
without distillation, and each run's pair.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ABLATION = "retrain_no_distill"


def _a3cs(*args: str) -> list[str]:
    return [sys.executable, "-m", "a3cs", *args]


def runs_of(sweep_dir: Path) -> list[Path]:
    """The finished search runs under ``sweep_dir`` (those with a distilled retrain)."""
    return sorted(p for p in sweep_dir.iterdir()
                  if (p / "retrain" / "config.yaml").is_file() and (p / "eval.json").is_file()
                  and yaml.safe_load((p / "retrain" / "config.yaml").read_text()).get("teacher"))


def _trained_steps(directory: Path) -> int:
    from a3cs.rl.checkpoint import read_checkpoint

    checkpoint = directory / "checkpoint.pt"
    return int(read_checkpoint(checkpoint)["global_step"]) if checkpoint.is_file() else 0


def ablate(run: Path, threads: int) -> str:
    """Retrain ``run``'s agent without its teacher (or continue) and evaluate it; a status."""
    out = run / ABLATION
    total = int(yaml.safe_load((run / "retrain" / "config.yaml").read_text())["total_steps"])
    with (run / f"{ABLATION}.log").open("a") as log:
        if _trained_steps(out) < total:
            command = (_a3cs("train", "--out", str(out), "--resume", "--no-teacher",
                             "--threads", str(threads), "--no-progress")
                       if (out / "checkpoint.pt").is_file() else
                       _a3cs("train", "--config", str(run / "retrain" / "config.yaml"),
                             "--no-teacher", "--out", str(out), "--threads", str(threads),
                             "--no-progress"))
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
            if code != 0:
                return f"{run.name}: training exited {code} (see {run / f'{ABLATION}.log'})"
        search = yaml.safe_load((run / "config.yaml").read_text())
        seed, episodes = int(search["seed"]), int(search["budget"]["eval_episodes"])
        cache = out / "eval.json"
        if cache.is_file() and json.loads(cache.read_text()).get("trained_steps") == total:
            return f"{run.name}: done before"
        printed = subprocess.run(
            _a3cs("evaluate", str(out / "checkpoint.pt"), "--episodes", str(episodes),
                  "--seed", str(10_000 + seed), "--policy-seed", str(seed), "--format",
                  "json", "--device", "cpu"),
            check=True, capture_output=True, text=True).stdout
    from a3cs_common.io import atomic_write_text

    result = json.loads(printed.strip().splitlines()[-1])
    result["checkpoint"] = str(Path(result["checkpoint"]).relative_to(run))
    atomic_write_text(cache, json.dumps(result, indent=2) + "\n")
    return f"{run.name}: {result['mean_return']:.2f} without distillation"


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def report(sweep_dir: Path) -> Path:
    """The ablation's table and plot over the runs that have both scores; the markdown's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from a3cs_common.io import atomic_write_text

    pairs: dict[str, list[tuple[int, float, float]]] = {}
    for run in runs_of(sweep_dir):
        if not (run / ABLATION / "eval.json").is_file():
            continue
        search = yaml.safe_load((run / "config.yaml").read_text())
        game = search["env_id"]
        with_distill = json.loads((run / "eval.json").read_text())["mean_return"]
        without = json.loads((run / ABLATION / "eval.json").read_text())["mean_return"]
        pairs.setdefault(game, []).append((int(search["seed"]), with_distill, without))
    rows = []
    for game, runs in sorted(pairs.items()):
        (w_mean, w_std), (n_mean, n_std) = (_mean_std([r[1] for r in runs]),
                                            _mean_std([r[2] for r in runs]))
        rows.append({"env_id": game, "runs": len(runs), "distilled_mean": w_mean,
                     "distilled_std": w_std, "no_distill_mean": n_mean,
                     "no_distill_std": n_std, "effect": w_mean - n_mean,
                     "per_seed": {f"s{s}": [w, n] for s, w, n in sorted(runs)}})
    lines = ["| game | runs | distilled (mean +- std) | without distillation | effect of "
             "distillation | per seed (distilled / without) |", "|---|---:|---|---|---:|---|"]
    for r in rows:
        per_seed = ", ".join(f"{s}: {w:.2f} / {n:.2f}" for s, (w, n) in r["per_seed"].items())
        lines.append(f"| {r['env_id']} | {r['runs']} | {r['distilled_mean']:.2f} +- "
                     f"{r['distilled_std']:.2f} | {r['no_distill_mean']:.2f} +- "
                     f"{r['no_distill_std']:.2f} | {r['effect']:+.2f} | {per_seed} |")
    markdown = atomic_write_text(sweep_dir / "distill_ablation.md", "\n".join(lines) + "\n")
    buffer = io.StringIO()
    fields = [k for k in rows[0] if k != "per_seed"] if rows else ["env_id"]
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(sweep_dir / "distill_ablation.csv", buffer.getvalue())
    atomic_write_text(sweep_dir / "distill_ablation.json", json.dumps(rows, indent=1) + "\n")

    figure, axes = plt.subplots(1, max(1, len(rows)), figsize=(3.2 * max(1, len(rows)), 3.4),
                                squeeze=False)
    for axis, r in zip(axes[0], rows, strict=False):
        seeds = list(r["per_seed"].values())
        for x, (label, index) in enumerate((("distilled", 0), ("no distillation", 1))):
            values = [pair[index] for pair in seeds]
            axis.bar(x, statistics.mean(values), color=("C0", "C1")[x], alpha=0.6, label=label)
            axis.scatter([x] * len(values), values, color="k", s=12, zorder=3)
        for pair in seeds:
            axis.plot([0, 1], pair, color="grey", linewidth=0.8)
        axis.set_xticks([0, 1], ["distilled", "without"])
        axis.set_title(r["env_id"].split("/")[-1], fontsize=10)
        axis.set_ylabel("test score")
    figure.suptitle("Retraining the searched agents with and without A2D distillation",
                    fontsize=10)
    figure.tight_layout()
    for suffix in (".png", ".svg"):
        figure.savefig(sweep_dir / f"distill_ablation{suffix}", dpi=120)
    plt.close(figure)
    return markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--jobs", type=int, default=1, help="runs retrained side by side")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"sweep_dir: got {str(args.sweep_dir)!r}; allowed: a sweep directory")
    runs = runs_of(args.sweep_dir)
    if not runs:
        parser.error(f"sweep_dir: got {str(args.sweep_dir)!r}; allowed: a directory holding "
                     "finished distilled search runs")
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for status in pool.map(lambda run: ablate(run, args.threads), runs):
            print(status, flush=True)
    print(f"table: {report(args.sweep_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
