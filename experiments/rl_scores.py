"""Scores of ``a3cs train`` with its per-environment defaults, against the field's anchors.

Trains every (environment, seed) with nothing but ``a3cs train --env E --seed S`` (so the table
in a3cs/data/env_defaults.yaml is what is measured), resuming runs a previous session left
unfinished, then evaluates each final checkpoint over 100 episodes and writes the table and
the learning curves with the anchors drawn in::

    python experiments/rl_scores.py run --out experiments/results/rl_scores --jobs 2
    python experiments/rl_scores.py report --out experiments/results/rl_scores
    python experiments/rl_scores.py teachers --out experiments/results/rl_scores

``--env-backend batched`` trains the MinAtar games on the batched backend instead (with the
table's entry for it), into another ``--out``
(by default ``experiments/results/rl_scores_batched``).

``run`` can be stopped at any time (a 10 M-step MinAtar run is ~20-25 min on one core here) and
started again: finished runs are skipped, unfinished ones continue exactly (``--resume``).
``report`` writes ``scores.csv``, ``scores.md`` and ``curves.png/.svg``, and next to each run
``agent.pt`` (the final agent without optimizer or environments, small enough to commit:
``a3cs evaluate RUN/agent.pt --episodes 100`` re-measures it) and ``eval.json``.
``teachers`` ships, for every MinAtar game whose three seeds finished, the best seed's agent
as the package's teacher (``a3cs/data/teachers/minatar_<game>.pt``) with its manifest entry.
"""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from a3cs_common.cli import OneLineParser, int_at_least, script_main, seed_int
from a3cs_common.errors import ConfigError

GAMES = ("Breakout", "SpaceInvaders", "Asterix", "Freeway", "Seaquest")


@dataclass(frozen=True)
class Anchor:
    """What the field publishes for an environment."""

    target: float | None  # the score the defaults must reach (median of seeds), or None
    steps: int  # where the target applies
    published: tuple[tuple[str, float], ...]  # (source, return), drawn as lines


ANCHORS: dict[str, Anchor] = {
    "CartPole-v1": Anchor(475.0, 100_000, (("rl-zoo PPO, 100 k steps", 500.0),)),
    "MinAtar/Breakout-v1": Anchor(28.0, 10_000_000, (
        ("gymnax-blines PPO, 10 M (no sticky actions)", 28.0),
        ("MinAtar paper AC(lambda), 5 M", 17.5), ("PGX PPO, 20 M", 50.0))),
    "MinAtar/SpaceInvaders-v1": Anchor(131.0, 10_000_000, (
        ("gymnax-blines PPO, 10 M (no sticky actions)", 131.6),
        ("MinAtar paper AC(lambda), 5 M", 185.0))),
    "MinAtar/Asterix-v1": Anchor(15.0, 10_000_000, (
        ("gymnax-blines PPO, 10 M (no sticky actions)", 15.0),
        ("MinAtar paper AC(lambda), 5 M", 19.0))),
    "MinAtar/Freeway-v1": Anchor(None, 10_000_000, (
        ("gymnax-blines PPO, 10 M (no sticky actions)", 58.8),
        ("MinAtar paper AC(lambda), 5 M", 47.0))),
    "MinAtar/Seaquest-v1": Anchor(None, 10_000_000, (
        ("MinAtar paper AC(lambda), 5 M", 16.0), ("MinAtar paper DQN, 5 M", 20.0))),
}


ALL_ENVS = ["CartPole-v1", *(f"MinAtar/{game}-v1" for game in GAMES)]


def slug(env_id: str) -> str:
    """``MinAtar/Breakout-v1`` -> ``breakout``, ``CartPole-v1`` -> ``cartpole``."""
    return env_id.split("/")[-1].split("-")[0].lower()


def run_dir(out: Path, env_id: str, seed: int) -> Path:
    return out / f"{slug(env_id)}_s{seed}"


def _a3cs(*args: str) -> list[str]:
    return [sys.executable, "-m", "a3cs", *args]


def _trained_steps(directory: Path) -> int | None:
    """Steps behind the run's final model: the checkpoint's, else the committed ``agent.pt``'s
    (checkpoints are not committed, so a fresh clone has only the agent)."""
    from a3cs.rl.checkpoint import load_agent, read_checkpoint

    if (directory / "checkpoint.pt").is_file():
        return int(read_checkpoint(directory / "checkpoint.pt")["global_step"])
    if (directory / "agent.pt").is_file():
        return load_agent(directory / "agent.pt").global_step
    return None


def _finished(directory: Path) -> bool:
    import yaml

    config = directory / "config.yaml"
    steps = _trained_steps(directory)
    if not config.is_file() or steps is None:
        return False
    return steps >= int(yaml.safe_load(config.read_text())["total_steps"])


def train_one(out: Path, env_id: str, seed: int, threads: int, trust_runs: bool = False,
              env_backend: str = "default") -> str:
    """Train (or continue) one run with the environment's defaults on ``env_backend``;
    returns a status line.  ``trust_runs``: continue runs this machine did not sign (yours,
    from another machine)."""
    directory = run_dir(out, env_id, seed)
    if _finished(directory):
        return f"{directory}: done before"
    command = _a3cs("train", "--env", env_id, "--seed", str(seed), "--out", str(directory),
                    "--threads", str(threads), "--no-progress", "--env-backend", env_backend)
    if (directory / "checkpoint.pt").is_file():
        command.append("--resume")
        if trust_runs:
            command.append("--trust-run")
    directory.parent.mkdir(parents=True, exist_ok=True)
    with (out / f"{directory.name}.log").open("a") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
    return f"{directory}: {'finished' if code == 0 else f'exit {code}'}"


def evaluate_run(directory: Path, episodes: int) -> dict[str, float]:
    """Export ``agent.pt`` and evaluate it (cached in ``eval.json`` per trained step)."""
    from a3cs.rl.checkpoint import export_agent, load_agent, read_checkpoint

    agent_path = directory / "agent.pt"
    checkpoint = directory / "checkpoint.pt"
    if checkpoint.is_file():
        data = read_checkpoint(checkpoint)
        if not agent_path.is_file() or load_agent(agent_path).global_step != data["global_step"]:
            export_agent(checkpoint, agent_path)
        trained_steps, wall_time_s = int(data["global_step"]), float(data["wall_time_s"])
    else:  # a fresh clone: the committed agent and its metrics
        trained_steps = load_agent(agent_path).global_step
        with (directory / "metrics.csv").open() as handle:
            wall_time_s = float(list(csv.DictReader(handle))[-1]["wall_time_s"])
    cache = directory / "eval.json"
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("trained_steps") == trained_steps and cached["episodes"] == episodes:
            return cached
    printed = subprocess.run(_a3cs("evaluate", str(agent_path), "--episodes", str(episodes),
                                   "--format", "json", "--device", "cpu"),
                             check=True, capture_output=True, text=True).stdout
    result = json.loads(printed.strip().splitlines()[-1])
    result["wall_time_s"] = wall_time_s
    from a3cs_common.io import atomic_write_text

    atomic_write_text(cache, json.dumps(result, indent=2) + "\n")
    return result


def seeds_present(out: Path, env_id: str) -> list[int]:
    """Seeds with a run directory (``<slug>_s<seed>``) under ``out``."""
    prefix = f"{slug(env_id)}_s"
    return sorted(int(path.name[len(prefix):]) for path in out.glob(f"{prefix}*")
                  if path.is_dir() and path.name[len(prefix):].isdigit())


def report(out: Path, envs: list[str], episodes: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from a3cs_common.io import atomic_write_text

    rows = []
    present = [env for env in envs if seeds_present(out, env)]
    fig, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 3.4), squeeze=False)
    for ax, env_id in zip(axes[0], present, strict=True):
        anchor = ANCHORS[env_id]
        scores = []
        for seed in seeds_present(out, env_id):
            directory = run_dir(out, env_id, seed)
            if _trained_steps(directory) is None:
                continue
            with (directory / "metrics.csv").open() as handle:
                curve = [(int(r["global_step"]), float(r["recent_return"]))
                         for r in csv.DictReader(handle) if r["recent_return"] != "nan"]
            ax.plot([s / 1e6 for s, _ in curve], [r for _, r in curve], lw=1,
                    label=f"seed {seed} (training return)")
            result = evaluate_run(directory, episodes)
            scores.append(result["mean_return"])
            rows.append({"env_id": env_id, "seed": seed, "steps": result["trained_steps"],
                         "score_mean": round(result["mean_return"], 3),
                         "score_std": round(result["std_return"], 3),
                         "episodes": result["episodes"],
                         "wall_time_s": round(result["wall_time_s"], 1),
                         "finished": _finished(directory),
                         "agent": str(directory / "agent.pt")})
            ax.scatter([result["trained_steps"] / 1e6], [result["mean_return"]], marker="*",
                       s=80, zorder=3)
        for (source, value), style in zip(anchor.published, ("--", ":", "-."), strict=False):
            ax.axhline(value, color="gray", ls=style, lw=1, label=source)
        if anchor.target is not None:
            ax.axhline(anchor.target, color="red", lw=1, label=f"target {anchor.target:g}")
        ax.set_title(f"{env_id}: median {statistics.median(scores):.1f}" if scores else env_id,
                     fontsize=9)
        ax.set_xlabel("environment steps (M)")
        ax.set_ylabel("return")
        ax.legend(fontsize=6)
    fig.tight_layout()
    for suffix in ("png", "svg"):
        fig.savefig(out / f"curves.{suffix}", dpi=130)
    plt.close(fig)

    columns = list(rows[0]) if rows else []
    with (out / "scores.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| environment | steps | seeds: mean ± std (100 episodes) | median | target | "
             "met | wall time a run (median) |", "|---|---:|---|---:|---:|---|---:|"]
    for env_id in present:
        mine = [r for r in rows if r["env_id"] == env_id]
        if not mine:
            continue
        median = statistics.median(r["score_mean"] for r in mine)
        target = ANCHORS[env_id].target
        met = "" if target is None else ("yes" if median >= target and all(
            r["finished"] for r in mine) and len(mine) >= 3 else "no")
        if env_id == "CartPole-v1" and target is not None:  # every seed, not the median
            met = "yes" if all(r["score_mean"] >= target for r in mine) else "no"
        per_seed = ", ".join(f"s{r['seed']} {r['score_mean']:.1f} ± {r['score_std']:.1f}"
                             + ("" if r["finished"] else f" (at {r['steps'] / 1e6:.1f} M)")
                             for r in mine)
        wall_min = statistics.median(r["wall_time_s"] for r in mine) / 60
        wall = f"{wall_min:.1f} min" if wall_min < 10 else f"{wall_min:.0f} min"
        lines.append(f"| {env_id} | {ANCHORS[env_id].steps:,} | {per_seed} | {median:.1f} | "
                     f"{'report' if target is None else f'{target:g}'} | {met} | {wall} |")
    atomic_write_text(out / "scores.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"table: {out / 'scores.md'}  curves: {out / 'curves.png'}")


def ship_teachers(out: Path, seeds: list[int], episodes: int) -> None:
    """Copy the best finished seed of each MinAtar game into the package, with its entry in
    a3cs/data/teachers/manifest.yaml (score, std, steps, seed, the command)."""
    import shutil

    import yaml

    from a3cs.rl.teachers import MANIFEST, TEACHERS_DIR
    from a3cs_common.io import atomic_write_text, dump_yaml

    manifest = yaml.safe_load(MANIFEST.read_text())
    header = "".join(line for line in MANIFEST.read_text().splitlines(keepends=True)
                     if line.startswith("#"))
    for game in GAMES:
        env_id = f"MinAtar/{game}-v1"
        runs = [run_dir(out, env_id, seed) for seed in seeds]
        if not all(_finished(run) for run in runs):
            print(f"{env_id}: not every seed finished; no teacher shipped")
            continue
        scored = [(evaluate_run(run, episodes), seed, run) for seed, run in zip(seeds, runs,
                                                                                strict=True)]
        result, seed, run = max(scored, key=lambda item: item[0]["mean_return"])
        name = f"minatar_{slug(env_id)}.pt"
        shutil.copyfile(run / "agent.pt", TEACHERS_DIR / name)
        manifest["teachers"][env_id] = {
            "file": name, "score_mean": round(result["mean_return"], 2),
            "score_std": round(result["std_return"], 2), "episodes": result["episodes"],
            "steps": int(result["trained_steps"]), "seed": seed,
            "command": f"a3cs train --env {env_id} --seed {seed} --out R (the defaults of "
                       f"a3cs/data/env_defaults.yaml); the best of seeds "
                       f"{', '.join(map(str, seeds))} in {out}/scores.md"}
        print(f"{env_id}: seed {seed}, {result['mean_return']:.2f} -> {TEACHERS_DIR / name}")
    atomic_write_text(MANIFEST, header + dump_yaml(manifest))


@script_main
def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("run", "report", "teachers"))
    parser.add_argument("--out", type=Path, default=None,
                        help="default: experiments/results/rl_scores, or rl_scores_batched "
                        "with --env-backend batched")
    parser.add_argument("--envs", nargs="+", default=None, choices=sorted(ANCHORS),
                        help="environments to train (default: all, the MinAtar games with "
                        "--env-backend batched; the report covers every one present)")
    parser.add_argument("--seeds", nargs="+", type=seed_int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int_at_least(1), default=2,
                        help="runs at once (one core each)")
    parser.add_argument("--episodes", type=int_at_least(1), default=100)
    parser.add_argument("--env-backend", choices=("default", "batched"), default="default",
                        help="batched: the MinAtar games as tensors (a3cs train --env-backend)")
    parser.add_argument("--trust-runs", action="store_true",
                        help="continue unfinished runs written on another machine (your own: "
                        "their environment state is a pickle, see a3cs train --trust-run)")
    args = parser.parse_args(argv)
    batched = args.env_backend == "batched"
    args.out = args.out or Path("experiments/results/rl_scores" + ("_batched" if batched else ""))
    envs = args.envs or [env for env in ALL_ENVS if env.startswith("MinAtar/") or not batched]
    not_minatar = [env for env in envs if not env.startswith("MinAtar/")]
    if batched and not_minatar:
        raise ConfigError("--envs", not_minatar[0], "MinAtar games with --env-backend batched")
    if args.action == "run":
        from a3cs_common.io import check_output_path

        check_output_path(args.out, field="--out", kind="directory")
    elif not any(seeds_present(args.out, env) for env in ALL_ENVS):
        raise ConfigError("--out", str(args.out), "a folder of runs (<env>_s<seed>/, written "
                          "by run)")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.action == "run":
        jobs = [(env, seed) for env in envs for seed in args.seeds]
        from tqdm import tqdm
        from tqdm.contrib.concurrent import thread_map

        def run_one(job: tuple[str, int]) -> str:
            line = train_one(args.out, *job, threads=1, trust_runs=args.trust_runs,
                             env_backend=args.env_backend)
            tqdm.write(line)  # each run's line as it ends, above the bar
            return line

        thread_map(run_one, jobs, max_workers=args.jobs, desc="rl_scores", unit="run")
    if args.action == "teachers":
        ship_teachers(args.out, args.seeds, args.episodes)
        return 0
    report(args.out, ALL_ENVS, args.episodes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
