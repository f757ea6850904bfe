"""MinAtar on the batched backend (a3cs.rl.batched) against the minatar package: environment
steps/s with random actions, PPO steps/s, and the final return of PPO over the same steps.

    python benchmarks/bench_envs.py [--device cpu|cuda] [--envs 8 64 512 4096]
        [--games Breakout ...] [--repeats 3] [--ppo-steps 100000] [--return-steps 500000]
        [--return-seeds 0 1 2] [--out experiments/results/bench_envs.json]

* env-only: ``num_envs`` copies stepped with uniformly random actions for about a second of
  work each; the Python backend (the minatar package through a3cs's vector env, on the CPU)
  and the batched one on ``--device``; steps/s of all environments together, the median of
  ``--repeats`` runs, and their ratio.
* PPO: ``a3cs train`` with each backend's defaults: the minatar package with the table's
  MinAtar entry (16 envs, 128 steps a rollout, 8 epochs of minibatches of 256, lr 5e-4), the
  batched games with the same settings at 128 envs (what the environments alone buy), and with
  the batched backend's entry (128 envs x 16 steps, 2 epochs, lr 3e-3), also at the other
  ``--ppo-envs`` counts at the same rollout size; steps/s (median of ``--repeats``) over
  ``--ppo-steps``; and, with ``--return-steps``, the first and last of these trained to that
  many steps from each of ``--return-seeds``, evaluated over 100 episodes of the minatar
  package's game (the issue's bar: 500 k steps, an equal final return).

Absolute speeds drift on shared machines: compare the ratios, measured in one session.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from a3cs.rl.batched import GAMES, make_batched_env
from a3cs.rl.envs import make_env
from a3cs_common.io import atomic_write_text

SETTINGS = {"default": "the MinAtar entry", "backend": "the batched entry"}


def env_steps_per_s(backend: str, env_id: str, num_envs: int, device: str,
                    seconds: float = 1.0) -> float:
    """Random-action steps/s of ``num_envs`` environments (all together)."""
    if backend == "batched":
        envs = make_batched_env(env_id, num_envs, seed=0, device=device)
        gen = torch.Generator(device=device).manual_seed(0)
        n_actions = envs.single_action_space.n

        def step() -> None:
            envs.step(torch.randint(0, n_actions, (num_envs,), generator=gen, device=device))
    else:
        envs = make_env(env_id, num_envs, seed=0)
        rng = np.random.default_rng(0)
        n_actions = envs.single_action_space.n

        def step() -> None:
            envs.step(rng.integers(0, n_actions, num_envs))
    for _ in range(5):
        step()
    steps, started = 0, time.perf_counter()
    while True:
        for _ in range(10):
            step()
        steps += 10
        if device == "cuda":
            torch.cuda.synchronize()
        if time.perf_counter() - started >= seconds:
            break
    elapsed = time.perf_counter() - started
    envs.close()
    return steps * num_envs / elapsed


def ppo_run(backend: str, settings: str, env_id: str, num_envs: int, steps: int, device: str,
            out: Path, seed: int = 0, rollout: int | None = None,
            batch: int | None = None) -> tuple[float, Path]:
    """One ``a3cs train`` run on ``backend`` with the table's ``settings`` (``default``: the
    environment's entry; ``backend``: with the backend's changes), ``num_envs`` environments,
    ``rollout`` steps a rollout and minibatches of ``batch`` if given: its steps/s and
    checkpoint."""
    from a3cs.rl.config import make_config
    from a3cs.rl.defaults import with_env_defaults
    from a3cs.rl.train import train

    values, _ = with_env_defaults({"env_id": env_id, "seed": seed, "total_steps": steps,
                                   "env_backend": backend if settings == "backend" else "default"})
    values["env_backend"] = backend
    values["device"] = device if backend == "batched" else "cpu"
    rollout = rollout or values["num_envs"] * values["n_steps"]
    values["num_envs"], values["n_steps"] = num_envs, max(1, rollout // num_envs)
    if batch is not None:
        values["batch_size"] = batch
    result = train(make_config(values), out, progress=False)
    return result.global_step / result.wall_time_s, result.checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--envs", type=int, nargs="+", default=[8, 64, 512, 4096])
    parser.add_argument("--games", nargs="+", default=sorted(GAMES), choices=sorted(GAMES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--python-max-envs", type=int, default=512,
                        help="largest env count timed on the Python backend (slow beyond)")
    parser.add_argument("--ppo-steps", type=int, default=100_000)
    parser.add_argument("--ppo-envs", type=int, nargs="+", default=[128, 16, 512],
                        help="env counts of the batched backend's entry (the first: the bar's)")
    parser.add_argument("--ppo-rollout", type=int, default=None,
                        help="steps a rollout, all envs together (default: the table's 2,048)")
    parser.add_argument("--return-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ppo-batch", type=int, default=None,
                        help="minibatch size (default: the table's 256)")
    parser.add_argument("--return-steps", type=int, default=0,
                        help="also train each backend this many steps and evaluate it "
                        "(the issue's bar: 500000)")
    parser.add_argument("--out", default="experiments/results/bench_envs.json")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device: got 'cuda'; allowed: cpu (this machine has no CUDA)")
    torch.set_num_threads(1)
    report: dict = {"device": args.device, "torch_threads": 1, "env_only": [], "ppo": []}
    if args.device == "cuda":
        report["gpu"] = torch.cuda.get_device_name()

    print(f"{'game':<14} {'envs':>5} {'python steps/s':>15} {'batched steps/s':>16} "
          f"{'ratio':>7}")
    for game in args.games:
        env_id = f"MinAtar/{game}-v1"
        for num_envs in args.envs:
            batched = statistics.median(env_steps_per_s("batched", env_id, num_envs,
                                                        args.device)
                                        for _ in range(args.repeats))
            python = (statistics.median(env_steps_per_s("default", env_id, num_envs, "cpu")
                                        for _ in range(args.repeats))
                      if num_envs <= args.python_max_envs else None)
            ratio = batched / python if python else None
            report["env_only"].append({"game": game, "envs": num_envs, "python": python,
                                       "batched": batched, "ratio": ratio})
            print(f"{game:<14} {num_envs:>5} "
                  + (f"{python:>15,.0f}" if python else f"{'-':>15}")
                  + f" {batched:>16,.0f} " + (f"{ratio:>6.1f}x" if ratio else f"{'-':>7}"),
                  flush=True)

    env_id = "MinAtar/Breakout-v1"
    with tempfile.TemporaryDirectory() as tmp:
        print(f"\nPPO on {env_id}, {args.ppo_steps:,} steps, rollouts of "
              f"{args.ppo_rollout or 2048:,} steps")
        # (backend, the table's settings for it, env count); the first is the reference
        runs = [("default", "default", 16), ("batched", "default", args.ppo_envs[0])] + [
            ("batched", "backend", n) for n in args.ppo_envs]
        rates: dict[int, list[float]] = {index: [] for index in range(len(runs))}
        for repeat in range(args.repeats):  # interleaved: the host's drift hits every run
            for index, (backend, settings, num_envs) in enumerate(runs):
                rates[index].append(ppo_run(
                    backend, settings, env_id, num_envs, args.ppo_steps, args.device,
                    Path(tmp) / f"ppo{index}_{repeat}", rollout=args.ppo_rollout,
                    batch=args.ppo_batch)[0])
        base = statistics.median(rates[0])
        for index, (backend, settings, num_envs) in enumerate(runs):
            rate = statistics.median(rates[index])
            report["ppo"].append({"backend": backend, "settings": settings, "envs": num_envs,
                                  "steps_per_s": rate, "runs": rates[index],
                                  "ratio": rate / base})
            print(f"  {backend:<8} {SETTINGS[settings]:<22} {num_envs:>5} envs: "
                  f"{rate:>9,.0f} steps/s ({rate / base:.2f}x)", flush=True)
        if args.return_steps:
            from a3cs.rl.checkpoint import load_agent
            from a3cs.rl.evaluate import evaluate_policy, model_policy

            print(f"\nfinal return after {args.return_steps:,} steps (100 episodes of "
                  "the minatar package's game)")
            report["final_return"] = []
            for backend, settings, num_envs in (runs[0], runs[2]):
                returns, run_rates = [], []
                for seed in args.return_seeds:
                    rate, checkpoint = ppo_run(
                        backend, settings, env_id, num_envs, args.return_steps, args.device,
                        Path(tmp) / f"ret_{backend}{num_envs}_{seed}", seed=seed)
                    agent = load_agent(checkpoint)
                    score = evaluate_policy(model_policy(agent.model, seed=0), env_id, 100,
                                            seed=10_000)
                    returns.append(score.mean_return)
                    run_rates.append(rate)
                    report["final_return"].append({
                        "backend": backend, "settings": settings, "envs": num_envs,
                        "seed": seed, "steps_per_s": rate, "mean_return": score.mean_return,
                        "std_return": score.std_return})
                print(f"  {backend:<8} {SETTINGS[settings]:<22} {num_envs:>5} envs: "
                      + ", ".join(f"s{seed} {value:.2f}"
                                  for seed, value in zip(args.return_seeds, returns,
                                                         strict=True))
                      + f"; median {statistics.median(returns):.2f}, mean "
                      f"{statistics.fmean(returns):.2f}; {statistics.median(run_rates):,.0f} "
                      "steps/s", flush=True)
    atomic_write_text(Path(args.out), json.dumps(report, indent=1) + "\n")
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
