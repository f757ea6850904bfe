"""a3cs PPO against stable-baselines3 PPO on MinAtar Breakout: training steps/s and return.

Same network (conv 16 3x3 -> FC 128 -> policy and value heads, orthogonal init), same
environment count and hyperparameters (8 envs, n_steps 128, batch 256, 4 epochs, lr 2.5e-4,
gamma 0.99, GAE 0.95, clip 0.2, no entropy bonus, vf 0.5, grad clip 0.5, Adam eps 1e-5), the
same number of torch threads each (``--threads``, default 1: one core).  Every (library,
seed) run is its own subprocess; the runs are interleaved (seed 0: sb3 then a3cs, seed 1:
a3cs then sb3, ...) so that load from other processes on a shared machine hits both alike.
Reported per run: wall-clock and CPU-time steps/s of the whole training call, the mean return
of the last 100 training episodes, and the return of the final policy over ``--episodes`` fresh
episodes (same evaluation code for both, stochastic policies).  Then medians, and the ratio of
the median steps/s.  Both timers start after the imports (SB3's also after building its
environments and model, a3cs's before: its training call builds them).

    python benchmarks/bench_rl.py --steps 500000 --seeds 0 1 2
    python benchmarks/bench_rl.py --steps 50000 --seeds 0            # a quick look
    python benchmarks/bench_rl.py --steps 200000 --threads 2         # both libraries on 2 cores

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


def run_a3cs(steps: int, seed: int, episodes: int, threads: int) -> dict[str, Any]:
    # SB3's worker builds its environments and model (importing MinAtar, which imports
    # seaborn, and torch._dynamo, which torch.optim.Adam's constructor imports) before its
    # timer starts; these imports take about 3 s, so a3cs's worker also does them first.
    import minatar.gym  # noqa: F401
    import torch
    import torch._dynamo

    from a3cs.rl.checkpoint import load_agent
    from a3cs.rl.config import TrainConfig
    from a3cs.rl.evaluate import evaluate_policy, model_policy
    from a3cs.rl.train import train

    torch.set_num_threads(threads)
    config = TrainConfig(env_id=ENV_ID, total_steps=steps, seed=seed, num_envs=NUM_ENVS,
                         torch_threads=threads, **HYPER)
    with tempfile.TemporaryDirectory() as run_dir:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        result = train(config, run_dir, progress=False)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        agent = load_agent(run_dir)
    evaluation = evaluate_policy(model_policy(agent.model, seed=seed), ENV_ID, episodes)
    return {"steps": result.global_step, "wall_s": wall, "cpu_s": cpu,
            "train_return_last100": result.recent_return_mean,
            "eval_return": evaluation.mean_return, "eval_std": evaluation.std_return}


def run_sb3(steps: int, seed: int, episodes: int, threads: int) -> dict[str, Any]:
    import gymnasium as gym
    import numpy as np
    import torch
    from minatar.gym import register_envs
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from stable_baselines3.common.vec_env import DummyVecEnv
    from torch import nn

    from a3cs.rl.evaluate import evaluate_policy

    torch.set_num_threads(threads)
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
    model = PPO("MlpPolicy", envs, seed=seed, device="cpu", verbose=0,
                policy_kwargs={"features_extractor_class": MinAtarCNN,
                               "net_arch": {"pi": [], "vf": []},
                               "activation_fn": nn.ReLU}, **HYPER)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=steps)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    recent = [info["r"] for info in model.ep_info_buffer]

    def policy(obs: np.ndarray) -> np.ndarray:
        # our envs are channel-first float; SB3's network reads MinAtar's HWC bool
        return model.predict(obs.transpose(0, 2, 3, 1) > 0.5, deterministic=False)[0]

    evaluation = evaluate_policy(policy, ENV_ID, episodes)
    return {"steps": int(model.num_timesteps), "wall_s": wall, "cpu_s": cpu,
            "train_return_last100": float(np.mean(recent)) if recent else float("nan"),
            "eval_return": evaluation.mean_return, "eval_std": evaluation.std_return}


def worker(args: argparse.Namespace) -> None:
    fn = run_a3cs if args.worker == "a3cs" else run_sb3
    result = fn(args.steps, args.seed, args.episodes, args.threads)
    result.update(impl=args.worker, seed=args.seed,
                  wall_steps_per_s=result["steps"] / result["wall_s"],
                  cpu_steps_per_s=result["steps"] / result["cpu_s"])
    Path(args.json).write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500_000, help="env steps per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of each run (both libraries)")
    parser.add_argument("--out", default=None, help="also write all results as JSON here")
    parser.add_argument("--worker", choices=("a3cs", "sb3"), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    if args.threads < 1:
        parser.error(f"--threads: {args.threads} is not allowed; give an integer >= 1")
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    runs: list[dict[str, Any]] = []
    print(f"{ENV_ID}: {args.steps} steps per run, seeds {args.seeds}, {args.threads} torch "
          f"thread(s) each, "
          f"load average at start {os.getloadavg()[0]:.2f}", flush=True)
    for k, seed in enumerate(args.seeds):
        order = ("sb3", "a3cs") if k % 2 == 0 else ("a3cs", "sb3")
        for impl in order:
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
                out = handle.name
            subprocess.run([sys.executable, __file__, "--worker", impl, "--seed", str(seed),
                            "--steps", str(args.steps), "--episodes", str(args.episodes),
                            "--threads", threads,
                            "--json", out], check=True, env=env)
            result = json.loads(Path(out).read_text())
            Path(out).unlink()
            result["load_average"] = os.getloadavg()[0]
            runs.append(result)
            print(f"  {impl:5s} seed {seed}: {result['wall_steps_per_s']:7.0f} steps/s wall, "
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
        from hw_sim.io import atomic_write_text

        atomic_write_text(args.out, json.dumps({"env_id": ENV_ID, "steps": args.steps,
                                                "seeds": args.seeds, "hyper": HYPER,
                                                "threads": args.threads,
                                                "num_envs": NUM_ENVS, "runs": runs,
                                                "medians": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
