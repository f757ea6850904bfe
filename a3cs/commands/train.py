"""``a3cs train``: train an agent (PPO/A2C, optionally distilled from a teacher)."""

from __future__ import annotations

import argparse
from typing import Any

from a3cs_common.cli import seed_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a DRL agent (PPO or A2C; A2D distillation with --teacher)",
        description="Train an actor-critic agent and leave a run directory with its config, "
        "checkpoint (for --resume and a3cs evaluate), hw_sim workload, metrics and "
        "TensorBoard scalars.",
    )
    parser.add_argument("--env", metavar="ENV", help="environment id, e.g. MinAtar/Breakout-v1 "
                        "(default), CartPole-v1, ALE/Pong-v5, HalfCheetah-v5")
    parser.add_argument("--arch", metavar="ARCH.yaml", help="network architecture (default: "
                        "the reference network for the observation type)")
    parser.add_argument("--steps", type=int, metavar="N", help="environment steps "
                        "(default: the environment's entry in a3cs/data/env_defaults.yaml)")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory")
    parser.add_argument("--teacher", metavar="CKPT", help="distill from this trained agent "
                        "(checkpoint or run directory)")
    parser.add_argument("--no-teacher", action="store_true", help="train without "
                        "distillation even when --config or the resumed run names a teacher "
                        "(the distillation ablation of a distilled run)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in RUN_DIR exactly where its checkpoint stopped")
    parser.add_argument("--trust-run", action="store_true",
                        help="with --resume: the run is yours, written before a3cs signed "
                        "runs; resume it although its environment state is unsigned")
    parser.add_argument("--config", metavar="TRAIN.yaml",
                        help="training config (any TrainConfig field); it overrides the "
                        "environment's defaults field by field, and flags override it")
    parser.add_argument("--algo", choices=("ppo", "a2c"), help="algorithm (default ppo)")
    parser.add_argument("--seed", type=seed_int, help="seed (default 0)")
    parser.add_argument("--num-envs", type=int, metavar="N", help="parallel environments")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default auto")
    parser.add_argument("--env-backend", choices=("default", "batched"),
                        help="batched: MinAtar's games as tensors on the training device, "
                        "every environment stepped at once, with the table's entry for them "
                        "(default: the minatar package)")
    parser.add_argument("--threads", type=int, metavar="N", help="torch CPU threads "
                        "(default 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from nas.arch import load_arch

    flags = {"env_id": args.env, "total_steps": args.steps, "teacher": args.teacher,
             "algo": args.algo, "seed": args.seed, "num_envs": args.num_envs,
             "device": args.device, "torch_threads": args.threads,
             "env_backend": args.env_backend}
    values = {key: value for key, value in flags.items() if value is not None}
    if args.arch is not None:
        values["arch"] = load_arch(args.arch)
    return values


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from a3cs.paths import resolve_path
    from a3cs.rl.checkpoint import AGENT_KEYS, CHECKPOINT_NAME, read_checkpoint, require_keys
    from a3cs.rl.config import TrainConfig
    from a3cs.rl.defaults import with_env_defaults
    from a3cs.rl.train import train
    from a3cs_common.errors import ConfigError
    from a3cs_common.io import check_output_path, load_mapping
    from a3cs_common.schema import validate

    check_output_path(args.out, field="--out", kind="directory")
    base: dict[str, Any] = {}
    if args.resume:
        ckpt = Path(args.out) / CHECKPOINT_NAME
        if not ckpt.is_file():
            raise ConfigError("--resume", args.out, f"a run directory holding {CHECKPOINT_NAME}")
        saved = read_checkpoint(ckpt, field="--resume")
        require_keys(saved, AGENT_KEYS, ckpt, field="--resume")
        if not isinstance(saved["config"], dict):
            raise ConfigError("--resume", str(ckpt), "a checkpoint whose config is a mapping")
        base = dict(saved["config"])
    if args.config is not None:
        base.update(load_mapping(args.config, field="--config"))
    if args.no_teacher and args.teacher is not None:
        raise ConfigError("--no-teacher", True, "either --no-teacher or --teacher, not both")
    values = {**base, **_overrides(args)}
    if args.no_teacher:
        values["teacher"] = None
    if values.get("teacher") is not None and not Path(
            resolve_path(values["teacher"], None)).exists():
        raise ConfigError("--teacher", values["teacher"], "an existing checkpoint or run "
                          "directory")
    if not args.resume:  # a checkpoint's config is complete: the table is not consulted
        values, entry = with_env_defaults(values)
        print(entry.describe())
    config = validate(TrainConfig, values, source=args.config)
    if args.trust_run and not args.resume:
        raise ConfigError("--trust-run", True, "together with --resume")
    result = train(config, args.out, resume=args.resume, progress=not args.no_progress,
                   trust_run=args.trust_run)
    print(f"run directory: {result.run_dir}  (device {result.device})")
    print(f"steps: {result.global_step}  updates: {result.updates}  episodes: {result.episodes}"
          f"  recent return: {result.recent_return_mean:.3f}"
          f"  steps/s: {result.steps_per_s:.0f}")
    print(f"checkpoint: {result.checkpoint}  (a3cs evaluate {result.checkpoint} --episodes 100)")
    print(f"workload: {result.run_dir / 'workload.yaml'}  (a3cs simulate --hw HW.yaml "
          f"--workload {result.run_dir / 'workload.yaml'})")
    return 0
