"""``a3cs evaluate``: returns of a trained agent over K episodes (and a GIF of one)."""

from __future__ import annotations

import argparse

from a3cs_common.cli import seed_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a trained agent (mean, std, min, max return over K episodes)",
        description="Run a trained agent's policy for K complete episodes and print the "
        "return statistics; --gif renders one episode (MinAtar/ALE).",
    )
    parser.add_argument("checkpoint", metavar="CKPT", help="checkpoint or run directory")
    parser.add_argument("--episodes", type=int, default=100, metavar="K",
                        help="episodes (default 100)")
    parser.add_argument("--seed", type=seed_int, default=10_000, help="seed of the evaluation "
                        "environments (default 10000, apart from training's)")
    parser.add_argument("--policy-seed", type=seed_int, default=None, metavar="SEED",
                        help="seed of the policy's action sampling (default: --seed); "
                        "`a3cs search` evaluates with --seed 10000+S --policy-seed S for its "
                        "seed S, so those two reproduce its eval.json exactly")
    parser.add_argument("--deterministic", action="store_true",
                        help="take the most likely action instead of sampling")
    parser.add_argument("--gif", metavar="FILE.gif", help="also render one episode to a GIF")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where the agent acts (default auto: CUDA when present)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    from a3cs.rl.checkpoint import load_agent
    from a3cs.rl.evaluate import evaluate_policy, model_policy, render_gif
    from a3cs.rl.loop import pick_device
    from a3cs_common.errors import ConfigError
    from a3cs_common.io import check_output_path
    from a3cs_common.torch_settings import deterministic_kernels

    if args.episodes < 1:
        raise ConfigError("--episodes", args.episodes, "an integer >= 1")
    if args.gif is not None:
        check_output_path(args.gif, field="--gif")
    device = pick_device(args.device)
    agent = load_agent(args.checkpoint, device=device)
    env_id = agent.config.env_id
    if args.gif is not None:
        from a3cs.rl.envs import env_family

        if env_family(env_id) not in ("minatar", "atari"):
            raise ConfigError("--gif", args.gif, f"a MinAtar or ALE agent (this one plays "
                              f"{env_id})")
    policy_seed = args.seed if args.policy_seed is None else args.policy_seed
    policy = model_policy(agent.model, deterministic=args.deterministic, seed=policy_seed)
    with deterministic_kernels(device):
        result = evaluate_policy(policy, env_id, args.episodes, seed=args.seed)
    if args.format == "json":
        print(json.dumps({"env_id": env_id, "checkpoint": args.checkpoint,
                          "trained_steps": agent.global_step, "device": str(device),
                          **result.to_dict()}))
    else:
        print(f"{env_id}  checkpoint {args.checkpoint} ({agent.global_step} steps, "
              f"acting on {device})")
        print(f"episodes {result.episodes}  mean {result.mean_return:.3f}  "
              f"std {result.std_return:.3f}  min {result.min_return:.3f}  "
              f"max {result.max_return:.3f}  mean length {result.mean_length_steps:.1f}")
    if args.gif is not None:
        path, episode_return = render_gif(policy, env_id, args.gif, seed=args.seed)
        print(f"gif: {path} (return {episode_return:.3f})")
    return 0
