"""A2D distillation curve: a small student with and without a trained teacher.

1. Train the teacher (the reference network) with PPO, or take ``--teacher CKPT``; its return
   is measured over ``--eval-episodes`` fresh episodes.
2. Train the student architecture for ``--student-steps`` with PPO + distillation (actor KL and
   critic MSE from the teacher) and with PPO alone, same seeds and hyperparameters.
3. Plot the recent training return (mean of the last 100 episodes; mean and min-max band over
   seeds) against environment steps, with the teacher's return and 90 % of it marked
   (PNG and SVG), and report the steps each student needs to reach 90 % of the teacher's
   return.

Every run is an ``a3cs train`` subprocess with its own run directory under ``--out``; a run
that is complete is reused and one that was killed is resumed, so the script can be
re-run after an interruption.

    python experiments/distill_curve.py --out experiments/results/distill_breakout \\
        --teacher-steps 2000000 --student-steps 1000000 --seeds 0 1 2 --jobs 2
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm
from tqdm.contrib.concurrent import thread_map

from a3cs_common.cli import OneLineParser, int_at_least, script_main, seed_int
from a3cs_common.errors import ConfigError
from a3cs_common.io import save_figure

REPO = Path(__file__).resolve().parents[1]

#: PPO settings of teacher and students alike (MinAtar: 8 envs x 128 steps, 4 epochs of
#: minibatches of 256, entropy bonus 0.01, learning rate 5e-4 annealed to 0).
TRAIN = {"num_envs": 8, "n_steps": 128, "batch_size": 256, "n_epochs": 4,
         "learning_rate": 5e-4, "lr_schedule": "linear", "ent_coef": 0.01,
         "checkpoint_every": 100}
DISTILL = {"actor_coef": 1.0, "critic_coef": 0.5, "schedule": "constant"}


def finished(run_dir: Path, steps: int) -> bool:
    """Whether ``run_dir`` holds a run that has done ``steps`` steps."""
    rows = read_metrics(run_dir)
    return bool(rows) and rows[-1]["global_step"] >= steps and (run_dir / "checkpoint.pt").exists()


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    path = run_dir / "metrics.csv"
    if not path.exists():
        return []
    with path.open() as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def train_run(run_dir: Path, *, env_id: str, steps: int, seed: int, arch: Path | None,
              teacher: Path | None, log: Path) -> float:
    """Train (or resume, or reuse) one run with ``a3cs train``; returns wall seconds."""
    if finished(run_dir, steps):
        return 0.0
    from a3cs_common.io import atomic_write_text, dump_yaml

    config = {**TRAIN, "env_id": env_id, "total_steps": steps, "seed": seed}
    if teacher is not None:
        config["teacher"] = str(teacher)
        config["distill"] = DISTILL
    config_path = run_dir.parent / f"{run_dir.name}.train.yaml"
    atomic_write_text(config_path, dump_yaml(config))
    cmd = [sys.executable, "-m", "a3cs", "train", "--config", str(config_path), "--out",
           str(run_dir), "--no-progress"]
    if arch is not None:
        cmd += ["--arch", str(arch)]
    if (run_dir / "checkpoint.pt").exists():
        cmd.append("--resume")
    start = time.perf_counter()
    with log.open("a") as handle:
        subprocess.run(cmd, check=True, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
    return time.perf_counter() - start


def evaluate(ckpt: Path, episodes: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "a3cs", "evaluate", str(ckpt), "--episodes",
                          str(episodes), "--format", "json"], check=True, capture_output=True,
                         text=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def steps_to_reach(rows: list[dict[str, float]], target: float) -> float:
    """First step at which the recent return reaches ``target`` (NaN: never)."""
    for row in rows:
        if row["recent_return"] >= target:
            return row["global_step"]
    return math.nan


def plot(curves: dict[str, list[list[dict[str, float]]]], teacher_return: float, path: Path,
         title: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.2))
    colours = {"distilled": "tab:blue", "no distillation": "tab:orange"}
    for label, runs in curves.items():
        length = min(len(r) for r in runs)
        steps = np.array([r["global_step"] for r in runs[0][:length]])
        values = np.array([[row["recent_return"] for row in r[:length]] for r in runs])
        ax.plot(steps, np.nanmean(values, 0), color=colours[label],
                label=f"student, {label} ({len(runs)} seeds)")
        ax.fill_between(steps, np.nanmin(values, 0), np.nanmax(values, 0),
                        color=colours[label], alpha=0.2, linewidth=0)
    ax.axhline(teacher_return, color="black", linestyle="-", linewidth=1,
               label=f"teacher ({teacher_return:.1f})")
    ax.axhline(0.9 * teacher_return, color="black", linestyle="--", linewidth=1,
               label="90 % of teacher")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("return (mean of last 100 episodes)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def check_inputs(args: argparse.Namespace) -> None:
    """The environment, the teacher, the student's architecture and ``--out``, checked before
    any run starts (the runs are child processes, whose errors would end this script in a
    traceback, hours in).

    Raises:
        ConfigError: one of them is not what the runs need.
    """
    from a3cs.rl.checkpoint import load_agent
    from a3cs.rl.envs import env_family
    from a3cs_common.io import check_output_path
    from nas.arch import load_arch

    env_family(args.env)
    if args.teacher is not None:
        plays = load_agent(args.teacher, field="--teacher").config.env_id
        if plays != args.env:
            raise ConfigError("--teacher", str(args.teacher), f"an agent of --env {args.env} "
                              f"(this one plays {plays})")
    load_arch(str(args.student_arch), field="--student-arch")
    check_output_path(args.out, field="--out", kind="directory")


@script_main
def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="MinAtar/Breakout-v1")
    parser.add_argument("--teacher", type=Path, help="teacher checkpoint (default: train one)")
    parser.add_argument("--teacher-steps", type=int_at_least(1), default=2_000_000)
    parser.add_argument("--student-arch", type=Path,
                        default=REPO / "experiments/arch/minatar_circulant_b8.yaml")
    parser.add_argument("--student-steps", type=int_at_least(1), default=1_000_000)
    parser.add_argument("--seeds", type=seed_int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-episodes", type=int_at_least(1), default=100)
    parser.add_argument("--jobs", type=int_at_least(1), default=1,
                        help="student runs in parallel")
    parser.add_argument("--out", type=Path, default=REPO / "experiments/results/distill")
    args = parser.parse_args(argv)
    check_inputs(args)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    log = out / "runs.log"

    teacher = args.teacher
    teacher_wall = 0.0
    if teacher is None:
        teacher = out / "teacher"
        print(f"training the teacher ({args.teacher_steps} steps) in {teacher}", flush=True)
        teacher_wall = train_run(teacher, env_id=args.env, steps=args.teacher_steps, seed=100,
                                 arch=None, teacher=None, log=log)
    teacher_eval = evaluate(teacher, args.eval_episodes)
    teacher_return = teacher_eval["mean_return"]
    print(f"teacher return {teacher_return:.2f} +- {teacher_eval['std_return']:.2f} over "
          f"{teacher_eval['episodes']} episodes", flush=True)

    jobs = [(label, seed) for seed in args.seeds for label in ("distilled", "no distillation")]

    def run(job: tuple[str, int]) -> float:
        label, seed = job
        name = f"student_{'distill' if label == 'distilled' else 'plain'}_s{seed}"
        wall = train_run(out / name, env_id=args.env, steps=args.student_steps, seed=seed,
                         arch=args.student_arch,
                         teacher=teacher if label == "distilled" else None, log=log)
        tqdm.write(f"  {name} done ({wall:.0f} s)")  # above the bar
        return wall

    walls = thread_map(run, jobs, max_workers=args.jobs, desc="students", unit="run")

    curves: dict[str, list[list[dict[str, float]]]] = {"distilled": [], "no distillation": []}
    per_seed: dict[str, list[dict[str, Any]]] = {"distilled": [], "no distillation": []}
    target = 0.9 * teacher_return
    for label, seed in jobs:
        name = f"student_{'distill' if label == 'distilled' else 'plain'}_s{seed}"
        rows = read_metrics(out / name)
        curves[label].append(rows)
        final = evaluate(out / name, args.eval_episodes)
        per_seed[label].append({"seed": seed, "steps_to_90pct": steps_to_reach(rows, target),
                                "final_recent_return": rows[-1]["recent_return"],
                                "final_eval_return": final["mean_return"],
                                "final_eval_std": final["std_return"]})

    figure = plot(curves, teacher_return, out / "distill_curve",
                  f"{args.env}: student {args.student_arch.stem}, A2D vs PPO alone")
    summary = {}
    for label, rows in per_seed.items():
        reached = [r["steps_to_90pct"] for r in rows if not math.isnan(r["steps_to_90pct"])]
        summary[label] = {
            "seeds_reaching_90pct": len(reached), "seeds": len(rows),
            "median_steps_to_90pct": (sorted(reached)[len(reached) // 2]
                                      if len(reached) == len(rows) else None),
            "mean_final_eval_return": sum(r["final_eval_return"] for r in rows) / len(rows),
            "per_seed": rows}
    result = {"env_id": args.env, "teacher": str(teacher), "teacher_return": teacher_return,
              "teacher_eval": teacher_eval, "teacher_steps": args.teacher_steps,
              "target_return_90pct": target, "student_arch": str(args.student_arch),
              "student_steps": args.student_steps, "seeds": args.seeds, "train": TRAIN,
              "distill": DISTILL, "students": summary,
              "wall_s": {"teacher": teacher_wall, "students": sum(walls)},
              "figure": [str(p) for p in figure]}
    from a3cs_common.io import atomic_write_text

    atomic_write_text(out / "results.json", json.dumps(result, indent=2, default=str) + "\n")
    print(f"target (90 % of teacher): {target:.2f}")
    for label, s in summary.items():
        steps = [r["steps_to_90pct"] for r in s["per_seed"]]
        shown = ", ".join("not reached" if math.isnan(x) else f"{x:.0f}" for x in steps)
        print(f"  {label:16s} steps to 90 %: {shown}; final eval return "
              f"{s['mean_final_eval_return']:.2f}")
    print(f"figure: {', '.join(str(p) for p in figure)}; results: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
