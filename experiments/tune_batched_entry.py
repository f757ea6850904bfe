"""How the batched backend's entry in the defaults table was chosen: PPO on MinAtar Breakout
to a fixed number of steps with candidate settings, each evaluated over 100 episodes.

Each candidate is a JSON mapping of TrainConfig fields laid over the MinAtar entry of
a3cs/data/env_defaults.yaml (``env_backend`` included: ``default`` is the minatar package);
every (candidate, seed) is trained once and appended to ``--out`` as one JSON line (its
settings, seed, steps, training steps/s, mean and std of the return), so the script can be
stopped and run again: finished lines are kept and skipped.  Then a table of every candidate
in the file: the return of each seed, their mean and median, the median steps/s::

    python experiments/tune_batched_entry.py --seeds 0 1 2 --settings \\
        '{"env_backend": "default"}' \\
        '{"env_backend": "batched", "num_envs": 128, "n_steps": 16, "n_epochs": 2, "learning_rate": 0.003}'
    python experiments/tune_batched_entry.py   # the table of what --out holds

Steps/s are each run's own, measured while whatever else ran on the machine ran: compare
speeds with ``benchmarks/bench_envs.py``, which interleaves them.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from a3cs_common.cli import OneLineParser, int_at_least, script_main, seed_int
from a3cs_common.errors import ConfigError

ENV_ID = "MinAtar/Breakout-v1"
DEFAULT_OUT = Path("experiments/results/tune_batched_entry.jsonl")
#: What each line of ``--out`` holds (the line :func:`train_and_score` returns).
LINE_KEYS = ("settings", "seed", "steps", "steps_per_s", "mean_return", "std_return")


def train_config(settings: dict, seed: int, steps: int) -> Any:
    """The TrainConfig of ``settings`` laid over the MinAtar entry (not the backend's).

    Raises:
        ConfigError: a setting is not a TrainConfig field or not a valid value of it.
    """
    from a3cs.rl.config import make_config
    from a3cs.rl.defaults import with_env_defaults

    values, _ = with_env_defaults({"env_id": ENV_ID, "seed": seed, "total_steps": steps,
                                   "device": "cpu"})
    values.update(settings)
    return make_config(values, source="--settings")


def read_lines(path: Path) -> list[dict]:
    """The runs recorded in ``path`` (none while it does not exist).

    Raises:
        ConfigError: it is not a file of this script's lines (a directory, binary data,
            other JSON).
    """
    from a3cs_common.io import read_text

    if not path.exists():
        return []
    expected = "a JSON-lines file of this script's runs"
    lines = []
    for number, text in enumerate(read_text(path, field="--out", expected=expected)
                                  .splitlines(), start=1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            line = None
        if not isinstance(line, dict) or not all(key in line for key in LINE_KEYS):
            raise ConfigError("--out", str(path), f"{expected} (line {number} is not a mapping "
                              f"of {', '.join(LINE_KEYS)})")
        lines.append(line)
    return lines


def train_and_score(settings: dict, seed: int, steps: int) -> dict:
    """Train ``settings`` (over the MinAtar entry, not the backend's) from ``seed`` for
    ``steps``; the line to record."""
    import torch

    from a3cs.rl.checkpoint import load_agent
    from a3cs.rl.evaluate import evaluate_policy, model_policy
    from a3cs.rl.train import train

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        result = train(train_config(settings, seed, steps), Path(tmp) / "run", progress=False)
        agent = load_agent(result.checkpoint)
        score = evaluate_policy(model_policy(agent.model, seed=0), ENV_ID, 100, seed=10_000)
    return {"settings": settings, "seed": seed, "steps": steps,
            "steps_per_s": result.global_step / result.wall_time_s,
            "mean_return": score.mean_return, "std_return": score.std_return}


def table(lines: list[dict]) -> str:
    """One row per (settings, steps), in the order first trained."""
    groups: dict[str, list[dict]] = {}
    for line in lines:
        groups.setdefault(json.dumps([line["settings"], line["steps"]], sort_keys=True),
                          []).append(line)
    rows = ["| settings (over the MinAtar entry) | steps | return per seed | mean | median | "
            "steps/s |", "|---|---:|---|---:|---:|---:|"]
    for runs in groups.values():
        runs.sort(key=lambda line: line["seed"])
        returns = [line["mean_return"] for line in runs]
        settings = ", ".join(f"{key} {value}" for key, value in runs[0]["settings"].items())
        rows.append(f"| {settings} | {runs[0]['steps']:,} | "
                    + ", ".join(f"s{line['seed']} {line['mean_return']:.2f}" for line in runs)
                    + f" | {statistics.fmean(returns):.2f} | {statistics.median(returns):.2f} | "
                    f"{statistics.median(line['steps_per_s'] for line in runs):,.0f} |")
    return "\n".join(rows)


@script_main
def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="*", default=[],
                        help="candidates, each a JSON mapping of TrainConfig fields")
    parser.add_argument("--seeds", nargs="+", type=seed_int, default=[0])
    parser.add_argument("--steps", type=int_at_least(1), default=500_000)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    candidates = []
    for text in args.settings:
        try:
            candidate = json.loads(text)
        except json.JSONDecodeError as error:
            candidate = error
        if not isinstance(candidate, dict):
            raise ConfigError("--settings", text, "a JSON mapping of TrainConfig fields")
        train_config(candidate, args.seeds[0], args.steps)  # a bad field now, not after a run
        candidates.append(candidate)
    from a3cs_common.io import check_output_path

    check_output_path(args.out, field="--out")  # appended to after each run
    lines = read_lines(args.out)
    done = {json.dumps([line["settings"], line["seed"], line["steps"]], sort_keys=True)
            for line in lines}
    for candidate in candidates:
        for seed in args.seeds:
            if json.dumps([candidate, seed, args.steps], sort_keys=True) in done:
                continue
            line = train_and_score(candidate, seed, args.steps)
            lines.append(line)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with args.out.open("a") as handle:  # one line a run: a stop loses no finished run
                handle.write(json.dumps(line) + "\n")
            print(f"{json.dumps(candidate)} seed {seed}: {line['mean_return']:.2f} at "
                  f"{line['steps_per_s']:,.0f} steps/s", flush=True)
    print(table(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
