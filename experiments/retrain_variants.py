"""Finished co-search runs' agents retrained by the same config with one thing changed,
evaluated as the search evaluated them (issue 21: the distillation ablation, item 5; GST's
reward-aware pruning and DCIL's refined gradients against the magnitude schedule, item 2).

    python experiments/retrain_variants.py SWEEP_DIR [SWEEP_DIR ...]
        --variant no_distill|reward_aware|refined|batched
        [--games breakout ...] [--methods evolution hand_designed ...] [--out DIR]
        [--jobs N] [--threads N]

For each run directory under the SWEEP_DIRs (an ``a3cs search`` run with ``retrain/config.yaml``
and ``eval.json``) it runs, resumably (a killed run continues from its checkpoint)::

    a3cs train --config RUN/retrain/config.yaml --no-teacher --out RUN/retrain_no_distill
    a3cs train --config RUN/retrain_reward_aware.yaml --out RUN/retrain_reward_aware
    a3cs evaluate RUN/retrain_V/agent.pt --episodes E \\
        --seed 10000+S --policy-seed S --format json        # -> RUN/retrain_V/eval.json

(``RUN/retrain_V.yaml``: the retrain config with the variant's change, e.g.
``sparsity_schedule: reward_aware``; E: the search's ``budget.eval_episodes``, S: its seed,
so the scores differ only by the change), then writes ``retrain_V.md``, ``.csv``, ``.json``
and a plot ``retrain_V.png``/``.svg`` in ``--out`` (default: the first SWEEP_DIR): per game
and method, the mean +- std over seeds of the search's retrain and of the variant, and each
run's pair.

``batched`` retrains on the batched MinAtar games with the defaults table's entry for them
(``env_backend: batched`` and the fields ``backends.batched.minatar`` changes: 128
environments x 16 steps, 2 epochs, learning rate 3e-3), the same 1 M steps and teacher.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from a3cs_common.cli import OneLineParser, int_at_least, script_main
from a3cs_common.io import load_mapping


def _batched(config: dict[str, Any]) -> dict[str, Any]:
    from a3cs.rl.defaults import backend_changes

    return {"env_backend": "batched",
            **backend_changes(config["env_id"], config.get("algo", "ppo"), "batched")}


#: name -> (extra a3cs train flags, changes to the retrain config (or a function of it that
#: returns them), label in the table)
VARIANTS: dict[str, tuple[list[str], dict[str, Any] | Callable[[dict], dict], str]] = {
    "no_distill": (["--no-teacher"], {}, "without distillation"),
    "reward_aware": ([], {"sparsity_schedule": "reward_aware"}, "GST's reward-aware pruning"),
    "refined": ([], {"pruned_gradient": "refined"}, "DCIL's refined gradients"),
    "batched": ([], _batched, "the batched games, their entry"),
}


def _a3cs(*args: str) -> list[str]:
    return [sys.executable, "-m", "a3cs", *args]


#: the variants that change how pruned layers train: no-ops for agents without one
PRUNING_VARIANTS = ("reward_aware", "refined")


def _prunes(run: Path) -> bool:
    """Whether the run's agent has a pruned (1xN or N:M) layer."""
    arch = load_mapping(run / "arch.yaml", field="sweep_dir")
    formats = [layer.get("weight_format") or {} for layer in arch["layers"]]
    formats.append(arch["head"].get("weight_format") or {})
    return any(f.get("type") in ("one_by_n", "n_m") for f in formats)


def _search(run: Path) -> dict[str, Any]:
    return load_mapping(run / "config.yaml", field="sweep_dir")


def game_of(run: Path) -> str:
    """The run's game in lower case (``MinAtar/Breakout-v1`` -> ``breakout``)."""
    return _search(run)["env_id"].split("/")[-1].split("-")[0].lower()


def method_of(run: Path) -> str:
    """The run's method, as its sweep labelled it (``evolution_finalists``, ``hand_designed``)."""
    search = _search(run)
    return search.get("label") or search["method"]


def runs_of(sweep_dir: Path, games: list[str] | None = None,
            variant: str | None = None, methods: list[str] | None = None) -> list[Path]:
    """The finished search runs under ``sweep_dir`` (those with a distilled retrain), of
    ``games`` (``breakout``...) and of ``methods`` (search methods or sweep labels) if given,
    and, for a pruning variant, with a pruned layer."""
    return sorted(p for p in sweep_dir.iterdir()
                  if (p / "retrain" / "config.yaml").is_file() and (p / "eval.json").is_file()
                  and load_mapping(p / "retrain" / "config.yaml", field="sweep_dir").get("teacher")
                  and (not games or game_of(p) in games)
                  and (not methods or {_search(p)["method"], method_of(p)} & set(methods))
                  and (variant not in PRUNING_VARIANTS or _prunes(p)))


def _trained_steps(directory: Path) -> int:
    """Steps behind the run's model: its checkpoint's, else its exported ``agent.pt``'s (a
    fresh clone, where only the agent is committed), else 0."""
    from a3cs.rl.checkpoint import load_agent, read_checkpoint

    checkpoint, agent = directory / "checkpoint.pt", directory / "agent.pt"
    if checkpoint.is_file():
        return int(read_checkpoint(checkpoint)["global_step"])
    return load_agent(agent).global_step if agent.is_file() else 0


def _exported(directory: Path) -> Path:
    """``agent.pt``: the trained agent alone (no optimizer or environments; what is committed),
    exported from the checkpoint when that is newer."""
    from a3cs.rl.checkpoint import export_agent, load_agent, read_checkpoint

    checkpoint, agent = directory / "checkpoint.pt", directory / "agent.pt"
    if checkpoint.is_file() and (not agent.is_file() or load_agent(agent).global_step !=
                                 read_checkpoint(checkpoint)["global_step"]):
        export_agent(checkpoint, agent)
    return agent


def retrain(run: Path, variant: str, threads: int, trust_runs: bool = False) -> str:
    """Retrain ``run``'s agent as ``variant`` (or continue) and evaluate it; a status.
    ``trust_runs``: continue runs this machine did not sign (yours, from another machine)."""
    flags, changes, label = VARIANTS[variant]
    name = f"retrain_{variant}"
    out = run / name
    config = load_mapping(run / "retrain" / "config.yaml", field="sweep_dir")
    total = int(config["total_steps"])
    config_path = run / "retrain" / "config.yaml"
    if callable(changes):
        changes = changes(config)
    if changes:
        from a3cs_common.io import atomic_write_text, dump_yaml

        config_path = run / f"{name}.yaml"
        atomic_write_text(config_path, dump_yaml({**config, **changes}))
    with (run / f"{name}.log").open("a") as log:
        if _trained_steps(out) < total:
            command = (_a3cs("train", "--out", str(out), "--resume", *flags,
                             "--threads", str(threads), "--no-progress",
                             *(["--trust-run"] if trust_runs else []))
                       if (out / "checkpoint.pt").is_file() else
                       _a3cs("train", "--config", str(config_path), *flags, "--out", str(out),
                             "--threads", str(threads), "--no-progress"))
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
            if code != 0:
                return f"{run.name}: training exited {code} (see {run / f'{name}.log'})"
        search = _search(run)
        seed, episodes = int(search["seed"]), int(search["budget"]["eval_episodes"])
        cache = out / "eval.json"
        # a rollout's steps past the total (the batched entry's rollouts are 2,048 steps)
        if cache.is_file() and json.loads(cache.read_text()).get("trained_steps", 0) >= total:
            return f"{run.name}: done before"
        printed = subprocess.run(
            _a3cs("evaluate", str(_exported(out)), "--episodes", str(episodes),
                  "--seed", str(10_000 + seed), "--policy-seed", str(seed), "--format",
                  "json", "--device", "cpu"),
            check=True, capture_output=True, text=True).stdout
    from a3cs_common.io import atomic_write_text

    result = json.loads(printed.strip().splitlines()[-1])
    result["checkpoint"] = str(Path(result["checkpoint"]).relative_to(run))
    atomic_write_text(cache, json.dumps(result, indent=2) + "\n")
    return f"{run.name}: {result['mean_return']:.2f} {label}"


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def report(sweep_dirs: list[Path], variant: str, out: Path | None = None) -> Path:
    """The variant's table and plot over the runs of ``sweep_dirs`` that have both scores,
    one row per game and method, written to ``out`` (default: the first sweep directory);
    the markdown's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from a3cs_common.io import atomic_write_text

    out = out or sweep_dirs[0]
    pairs: dict[tuple[str, str], list[tuple[int, float, float]]] = {}
    name, label = f"retrain_{variant}", VARIANTS[variant][2]
    for run in (run for sweep_dir in sweep_dirs for run in runs_of(sweep_dir)):
        if not (run / name / "eval.json").is_file():
            continue
        search = _search(run)
        searched = json.loads((run / "eval.json").read_text())["mean_return"]
        changed = json.loads((run / name / "eval.json").read_text())["mean_return"]
        pairs.setdefault((search["env_id"], method_of(run)), []).append(
            (int(search["seed"]), searched, changed))
    rows = []
    for (game, method), runs in sorted(pairs.items()):
        (w_mean, w_std), (n_mean, n_std) = (_mean_std([r[1] for r in runs]),
                                            _mean_std([r[2] for r in runs]))
        rows.append({"env_id": game, "method": method, "runs": len(runs), "search_mean": w_mean,
                     "search_std": w_std, "variant_mean": n_mean, "variant_std": n_std,
                     "difference": n_mean - w_mean,
                     "per_seed": {f"s{s}": [w, n] for s, w, n in sorted(runs)}})
    lines = [f"| game | method | runs | the search's retrain (mean +- std) | {label} | "
             f"difference | per seed (search / {variant}) |", "|---|---|---:|---|---|---:|---|"]
    for r in rows:
        per_seed = ", ".join(f"{s}: {w:.2f} / {n:.2f}" for s, (w, n) in r["per_seed"].items())
        lines.append(f"| {r['env_id']} | {r['method']} | {r['runs']} | {r['search_mean']:.2f} +- "
                     f"{r['search_std']:.2f} | {r['variant_mean']:.2f} +- "
                     f"{r['variant_std']:.2f} | {r['difference']:+.2f} | {per_seed} |")
    markdown = atomic_write_text(out / f"{name}.md", "\n".join(lines) + "\n")
    buffer = io.StringIO()
    fields = [k for k in rows[0] if k != "per_seed"] if rows else ["env_id"]
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / f"{name}.csv", buffer.getvalue())
    atomic_write_text(out / f"{name}.json", json.dumps(rows, indent=1) + "\n")

    figure, axes = plt.subplots(1, max(1, len(rows)), figsize=(3.2 * max(1, len(rows)), 3.4),
                                squeeze=False)
    for axis, r in zip(axes[0], rows, strict=False):
        seeds = list(r["per_seed"].values())
        for x, index in enumerate((0, 1)):
            values = [pair[index] for pair in seeds]
            axis.bar(x, statistics.mean(values), color=("C0", "C1")[x], alpha=0.6)
            axis.scatter([x] * len(values), values, color="k", s=12, zorder=3)
        for pair in seeds:
            axis.plot([0, 1], pair, color="grey", linewidth=0.8)
        axis.set_xticks([0, 1], ["search", variant])
        axis.set_title(f"{r['env_id'].split('/')[-1]}, {r['method']}", fontsize=9)
        axis.set_ylabel("test score")
    figure.suptitle(f"The searched agents retrained: the search's retrain vs {label}",
                    fontsize=10)
    figure.tight_layout()
    for suffix in (".png", ".svg"):
        figure.savefig(out / f"{name}{suffix}", dpi=120)
    plt.close(figure)
    return markdown


@script_main
def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dirs", nargs="+", type=Path, metavar="SWEEP_DIR")
    parser.add_argument("--variant", required=True, choices=sorted(VARIANTS))
    parser.add_argument("--games", nargs="+", help="only these games' runs (e.g. breakout)")
    parser.add_argument("--methods", nargs="+",
                        help="only these methods' runs (a search method or a sweep's label, "
                        "e.g. hand_designed evolution_finalists)")
    parser.add_argument("--out", type=Path,
                        help="where the table and plot go (default: the first SWEEP_DIR)")
    parser.add_argument("--jobs", type=int_at_least(1), default=1,
                        help="runs retrained side by side")
    parser.add_argument("--threads", type=int_at_least(1), default=1,
                        help="torch threads per run")
    parser.add_argument("--trust-runs", action="store_true",
                        help="continue unfinished runs written on another machine (your own: "
                        "their environment state is a pickle, see a3cs train --trust-run)")
    args = parser.parse_args(argv)
    for sweep_dir in args.sweep_dirs:
        if not sweep_dir.is_dir():
            parser.error(f"sweep_dir: got {str(sweep_dir)!r}; allowed: a sweep directory")
    if args.out is not None and not args.out.is_dir():
        parser.error(f"--out: got {str(args.out)!r}; allowed: an existing directory")
    runs = [run for sweep_dir in args.sweep_dirs
            for run in runs_of(sweep_dir, args.games, args.variant, args.methods)]
    if not runs:
        parser.error(f"sweep_dir: got {' '.join(map(str, args.sweep_dirs))!r}; allowed: "
                     "directories holding finished distilled search runs (of --games and "
                     "--methods if given)")
    from tqdm import tqdm
    from tqdm.contrib.concurrent import thread_map

    def retrain_one(run: Path) -> str:
        status = retrain(run, args.variant, args.threads, args.trust_runs)
        tqdm.write(status)  # each run's line as it ends, above the bar
        return status

    thread_map(retrain_one, runs, max_workers=args.jobs, desc=f"retrain {args.variant}",
               unit="run")
    print(f"table: {report(args.sweep_dirs, args.variant, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
