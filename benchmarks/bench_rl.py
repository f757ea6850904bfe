"""a3cs PPO against stable-baselines3 PPO on MinAtar Breakout: training steps/s and return.

Same network (conv 16 3x3 -> FC 128 -> policy and value heads, orthogonal init), same
environment count and hyperparameters (8 envs, n_steps 128, batch 256, 4 epochs, lr 2.5e-4,
gamma 0.99, GAE 0.95, clip 0.2, no entropy bonus, vf 0.5, grad clip 0.5, Adam eps 1e-5), the
same number of torch threads each (``--threads``, default 1: one core).

Two ways to share the machine fairly (``--mode``):

* ``paired`` (default): for each seed, one process trains both, alternating one a3cs update
  (1024 steps: rollout and update, :func:`a3cs.rl.train.training`) with one SB3 iteration
  (1024 steps: ``collect_rollouts`` and ``train``, stepped from SB3's own ``on_rollout_start``
  callback) until both have taken ``--steps``.  Each library's time is the sum of its own
  slices, so a change in the host's speed (this shared machine drifts by 10-40 % over
  minutes) hits both within a third of a second of each other.
* ``separate``: every (library, seed) run is its own process, interleaved (seed 0: sb3 then
  a3cs, seed 1: a3cs then sb3, ...).

Reported per run: wall-clock and CPU-time steps/s of the training, the mean return of the last
100 training episodes, and the return of the final policy over ``--episodes`` fresh episodes
(same evaluation code for both, stochastic policies).  Then medians, and the ratio of the
median steps/s.  SB3's time starts after building its environments and model, a3cs's before
(its first update builds them); both after the imports.  Training is deterministic in both
modes: the same seed gives the same returns whichever way it is run.

    python benchmarks/bench_rl.py --steps 200000 --seeds 0 1 2
    python benchmarks/bench_rl.py --steps 50000 --seeds 0            # a quick look
    python benchmarks/bench_rl.py --steps 200000 --threads 2         # both libraries on 2 cores
    python benchmarks/bench_rl.py --steps 200000 --mode separate     # one process per run

Needs the ``bench`` extra (``pip install 'a3cs[bench]'``: stable-baselines3 2.9.2).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ENV_ID = "MinAtar/Breakout-v1"
HYPER = {"n_steps": 128, "batch_size": 256, "n_epochs": 4, "learning_rate": 2.5e-4,
         "gamma": 0.99, "gae_lambda": 0.95, "clip_range": 0.2, "ent_coef": 0.0,
         "vf_coef": 0.5, "max_grad_norm": 0.5}
NUM_ENVS = 8


def _import_like_sb3() -> None:
    # SB3's worker builds its environments and model (importing MinAtar, which imports
    # seaborn, and torch._dynamo, which torch.optim.Adam's constructor imports) before its
    # timer starts; these imports take about 3 s, so a3cs's timer starts after them too.
    import minatar.gym  # noqa: F401
    import torch._dynamo  # noqa: F401


def _a3cs_config(steps: int, seed: int, threads: int) -> Any:
    from a3cs.rl.config import TrainConfig

    return TrainConfig(env_id=ENV_ID, total_steps=steps, seed=seed, num_envs=NUM_ENVS,
                       torch_threads=threads, **HYPER)


def _a3cs_result(result: Any, wall: float, cpu: float, seed: int,
                 episodes: int) -> dict[str, Any]:
    from a3cs.rl.checkpoint import load_agent
    from a3cs.rl.evaluate import evaluate_policy, model_policy

    agent = load_agent(result.run_dir)
    evaluation = evaluate_policy(model_policy(agent.model, seed=seed), ENV_ID, episodes)
    return {"impl": "a3cs", "seed": seed, "steps": result.global_step, "wall_s": wall,
            "cpu_s": cpu, "train_return_last100": result.recent_return_mean,
            "eval_return": evaluation.mean_return, "eval_std": evaluation.std_return}


def _sb3_model(seed: int) -> Any:
    import gymnasium as gym
    import torch
    from minatar.gym import register_envs
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from stable_baselines3.common.vec_env import DummyVecEnv
    from torch import nn

    register_envs()

    class MinAtarCNN(BaseFeaturesExtractor):
        """MinAtar's network: HWC bool -> conv 16 3x3 -> FC 128 (ReLU)."""

        def __init__(self, observation_space: gym.spaces.Box) -> None:
            super().__init__(observation_space, features_dim=128)
            h, w, c = observation_space.shape
            self.conv = nn.Conv2d(c, 16, 3)
            self.fc = nn.Linear(16 * (h - 2) * (w - 2), 128)

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.conv(obs.permute(0, 3, 1, 2)))
            return torch.relu(self.fc(x.flatten(1)))

    envs = make_vec_env(ENV_ID, n_envs=NUM_ENVS, seed=seed, vec_env_cls=DummyVecEnv)
    return PPO("MlpPolicy", envs, seed=seed, device="cpu", verbose=0,
               policy_kwargs={"features_extractor_class": MinAtarCNN,
                              "net_arch": {"pi": [], "vf": []},
                              "activation_fn": nn.ReLU}, **HYPER)


def _sb3_result(model: Any, wall: float, cpu: float, seed: int,
                episodes: int) -> dict[str, Any]:
    import numpy as np

    from a3cs.rl.evaluate import evaluate_policy

    recent = [info["r"] for info in model.ep_info_buffer]

    def policy(obs: np.ndarray) -> np.ndarray:
        # our envs are channel-first float; SB3's network reads MinAtar's HWC bool
        return model.predict(obs.transpose(0, 2, 3, 1) > 0.5, deterministic=False)[0]

    evaluation = evaluate_policy(policy, ENV_ID, episodes)
    return {"impl": "sb3", "seed": seed, "steps": int(model.num_timesteps),
            "wall_s": wall, "cpu_s": cpu,
            "train_return_last100": float(np.mean(recent)) if recent else float("nan"),
            "eval_return": evaluation.mean_return, "eval_std": evaluation.std_return}


def run_a3cs(steps: int, seed: int, episodes: int, threads: int) -> list[dict[str, Any]]:
    _import_like_sb3()
    import torch

    from a3cs.rl.train import train

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as run_dir:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        result = train(_a3cs_config(steps, seed, threads), run_dir, progress=False)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        return [_a3cs_result(result, wall, cpu, seed, episodes)]


def run_sb3(steps: int, seed: int, episodes: int, threads: int) -> list[dict[str, Any]]:
    import torch

    torch.set_num_threads(threads)
    model = _sb3_model(seed)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=steps)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return [_sb3_result(model, wall, cpu, seed, episodes)]


def run_paired(steps: int, seed: int, episodes: int, threads: int) -> list[dict[str, Any]]:
    _import_like_sb3()
    import torch
    from stable_baselines3.common.callbacks import BaseCallback

    from a3cs.rl.train import training

    torch.set_num_threads(threads)
    model = _sb3_model(seed)
    a3cs_time = [0.0, 0.0]  # wall, cpu
    finished: list[Any] = []  # a3cs's TrainResult, once its run is complete

    with tempfile.TemporaryDirectory() as run_dir:
        updates = training(_a3cs_config(steps, seed, threads), run_dir, progress=False)

        def a3cs_update() -> bool:
            """One a3cs update, timed; False once its run is complete."""
            wall0, cpu0 = time.perf_counter(), time.process_time()
            try:
                next(updates)
            except StopIteration as done:
                finished.append(done.value)
            a3cs_time[0] += time.perf_counter() - wall0
            a3cs_time[1] += time.process_time() - cpu0
            return not finished

        class Alternate(BaseCallback):
            """Before each SB3 rollout, one a3cs update."""

            def _on_rollout_start(self) -> None:
                a3cs_update()

            def _on_step(self) -> bool:
                return True

        wall0, cpu0 = time.perf_counter(), time.process_time()
        model.learn(total_timesteps=steps, callback=Alternate())
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        while a3cs_update():  # a3cs's last update and its final checkpoint
            pass
        results = [_a3cs_result(finished[0], *a3cs_time, seed, episodes)]
    results.append(_sb3_result(model, wall - a3cs_time[0], cpu - a3cs_time[1], seed, episodes))
    return results


def worker(args: argparse.Namespace) -> None:
    run = {"a3cs": run_a3cs, "sb3": run_sb3, "paired": run_paired}[args.worker]
    results = run(args.steps, args.seed, args.episodes, args.threads)
    for result in results:
        result.update(wall_steps_per_s=result["steps"] / result["wall_s"],
                      cpu_steps_per_s=result["steps"] / result["cpu_s"])
    Path(args.json).write_text(json.dumps(results))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500_000, help="env steps per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of each run (both libraries)")
    parser.add_argument("--mode", choices=("paired", "separate"), default="paired",
                        help="paired: one process per seed alternating the libraries' "
                        "updates; separate: one process per run (see the module docstring)")
    parser.add_argument("--out", default=None, help="also write all results as JSON here")
    parser.add_argument("--worker", choices=("a3cs", "sb3", "paired"), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    from a3cs_common.errors import ConfigError

    try:
        for flag, value in (("--steps", args.steps), ("--episodes", args.episodes),
                            ("--threads", args.threads)):
            if value < 1:
                raise ConfigError(flag, value, "an integer >= 1")
        if len(set(args.seeds)) != len(args.seeds):
            raise ConfigError("--seeds", " ".join(map(str, args.seeds)), "distinct seeds")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    compare(args)
    return 0


def compare(args: argparse.Namespace) -> None:
    """Run every seed's workers (see ``--mode``), print each result and the medians."""
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    runs: list[dict[str, Any]] = []
    print(f"{ENV_ID}: {args.steps} steps per run, seeds {args.seeds}, {args.threads} torch "
          f"thread(s) each, {args.mode} runs, "
          f"load average at start {os.getloadavg()[0]:.2f}", flush=True)
    for k, seed in enumerate(args.seeds):
        if args.mode == "paired":
            workers: tuple[str, ...] = ("paired",)
        else:
            workers = ("sb3", "a3cs") if k % 2 == 0 else ("a3cs", "sb3")
        for name in workers:
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
                out = handle.name
            subprocess.run([sys.executable, __file__, "--worker", name, "--seed", str(seed),
                            "--steps", str(args.steps), "--episodes", str(args.episodes),
                            "--threads", threads,
                            "--json", out], check=True, env=env)
            results = json.loads(Path(out).read_text())
            Path(out).unlink()
            for result in results:
                result["load_average"] = os.getloadavg()[0]
                runs.append(result)
                print(f"  {result['impl']:5s} seed {seed}: "
                      f"{result['wall_steps_per_s']:7.0f} steps/s wall, "
                      f"{result['cpu_steps_per_s']:7.0f} steps/s cpu, train return (last 100) "
                      f"{result['train_return_last100']:6.2f}, eval return "
                      f"{result['eval_return']:6.2f} +- {result['eval_std']:.2f} "
                      f"(load {result['load_average']:.2f})", flush=True)

    def median(impl: str, key: str) -> float:
        return statistics.median(r[key] for r in runs if r["impl"] == impl)

    summary = {key: {impl: median(impl, key) for impl in ("a3cs", "sb3")}
               for key in ("wall_steps_per_s", "cpu_steps_per_s", "train_return_last100",
                           "eval_return")}
    pairs = [a["wall_steps_per_s"] / b["wall_steps_per_s"] for a in runs for b in runs
             if a["impl"] == "a3cs" and b["impl"] == "sb3" and a["seed"] == b["seed"]]
    print("medians over seeds:")
    for key, values in summary.items():
        print(f"  {key:22s} a3cs {values['a3cs']:9.2f}   sb3 {values['sb3']:9.2f}")
    print(f"steps/s ratio a3cs/sb3: wall {summary['wall_steps_per_s']['a3cs'] / summary['wall_steps_per_s']['sb3']:.2f}x"
          f" (per seed: {', '.join(f'{p:.2f}' for p in pairs)}),"
          f" cpu {summary['cpu_steps_per_s']['a3cs'] / summary['cpu_steps_per_s']['sb3']:.2f}x")
    if args.out:
        from a3cs_common.io import atomic_write_text

        atomic_write_text(args.out, json.dumps({"env_id": ENV_ID, "steps": args.steps,
                                                "seeds": args.seeds, "hyper": HYPER,
                                                "threads": args.threads,
                                                "mode": args.mode,
                                                "num_envs": NUM_ENVS, "runs": runs,
                                                "medians": summary}, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
