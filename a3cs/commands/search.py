"""``a3cs search``: co-search an agent and its hardware (or run a baseline), end to end."""

from __future__ import annotations

import argparse

from a3cs_common.cli import finite_float, seed_int

# CLI flag -> dotted config field
_OVERRIDES = {
    "method": "method", "env": "env_id", "seed": "seed", "target": "target", "space": "space",
    "teacher": "teacher", "lam": "cost.lam", "target_fps": "cost.target_fps",
    "target_speedup": "cost.target_speedup",
    "warmup_steps": "budget.warmup_steps", "search_steps": "budget.search_steps",
    "retrain_steps": "budget.retrain_steps", "eval_episodes": "budget.eval_episodes",
    "proxy_steps": "budget.proxy_steps", "teacher_steps": "budget.teacher_steps",
    "device": "device",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    from a3cs.search.config import METHODS

    parser = subparsers.add_parser(
        "search",
        help="co-search a DRL agent and its accelerator / CPU deployment (or run a baseline)",
        description="Search (or take) an agent architecture and its hardware, retrain the "
        "agent, evaluate its score, measure it on the ground-truth hardware model and write "
        "results.json/csv and a Pareto plot.  With no arguments: the embedded default, a short "
        "co-search on MinAtar Breakout.",
    )
    parser.add_argument("config", nargs="?", metavar="CONFIG.yaml",
                        help="search config (default: the embedded short co-search)")
    parser.add_argument("--method", choices=METHODS, help="a3cs, a3cs_no_distill, "
                        "hand_designed, sequential, random or evolution")
    parser.add_argument("--env", help="environment id, e.g. MinAtar/Breakout-v1")
    parser.add_argument("--seed", type=seed_int, help="seed of the whole run")
    parser.add_argument("--target", help="accelerator:SPACE.yaml or cpu:PROFILE")
    parser.add_argument("--space", metavar="SPACE.yaml", help="agent search space")
    parser.add_argument("--teacher", metavar="CKPT", help="A2D teacher checkpoint")
    parser.add_argument("--lam", type=finite_float,
                        help="weight of the relative expected latency")
    parser.add_argument("--target-fps", type=finite_float, help="adapt lambda to reach this FPS "
                        "(replaces the config's target_speedup)")
    parser.add_argument("--target-speedup", type=finite_float, help="adapt lambda until the "
                        "agent is this many times faster than the hand-designed one (replaces "
                        "the config's target_fps)")
    for name in ("warmup_steps", "search_steps", "retrain_steps", "eval_episodes",
                 "proxy_steps", "teacher_steps"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, dest=name,
                            help=f"budget.{name}")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        dest="settings", help="any config field by its dotted name, the value "
                        "read as YAML (repeatable), e.g. --set proxy.kind=distill --set "
                        "budget.trials=24")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where every stage "
                        "trains and evaluates (default auto: CUDA when present)")
    parser.add_argument("--out", metavar="RUN_DIR",
                        help="run directory (default: runs/<method>_seed<seed>_<time>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out where it stopped")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or log echo")
    parser.set_defaults(run=run)


def _parse_setting(raw: str) -> tuple[str, object]:
    """``a.b=value`` -> ``("a.b", value read as YAML)``.

    Raises:
        ConfigError: no ``=``, an empty field name, or a value that is not YAML.
    """
    import yaml

    from a3cs_common.errors import ConfigError

    field, sep, text = raw.partition("=")
    if not sep or not field or any(not part for part in field.split(".")):
        raise ConfigError("--set", raw, "FIELD=VALUE with a dotted field name, e.g. "
                          "proxy.kind=distill")
    try:
        return field, yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"--set {field}", text, "a YAML value (a number, a word, "
                          "[a, list] or {a: mapping})") from None


def run(args: argparse.Namespace) -> int:
    from datetime import datetime
    from pathlib import Path

    from a3cs.search.config import load_search_config
    from a3cs.search.run import run_search
    from a3cs_common.errors import ConfigError
    from a3cs_common.io import check_output_path

    if args.resume and not args.out:
        raise ConfigError("--resume", True, "together with --out RUN_DIR (the run to continue)")
    overrides: dict[str, object] = {}
    assignments = [_parse_setting(raw) for raw in args.settings]
    assignments += [(field, getattr(args, flag)) for flag, field in _OVERRIDES.items()
                    if getattr(args, flag) is not None]  # flags win over --set
    for field, value in assignments:
        node = overrides
        *parents, leaf = field.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})  # type: ignore[assignment]
            if not isinstance(node, dict):
                raise ConfigError("--set", field, f"a field inside a mapping ({parent} is "
                                  "set to a single value by another --set)")
        node[leaf] = value
    cost = overrides.get("cost")
    if isinstance(cost, dict):  # one latency target: a flag replaces the file's other one
        if "target_fps" in cost and "target_speedup" not in cost:
            cost["target_speedup"] = None
        if "target_speedup" in cost and "target_fps" not in cost:
            cost["target_fps"] = None
    config = load_search_config(args.config, overrides)
    out = Path(args.out) if args.out else Path("runs") / (
        f"{config.method}_seed{config.seed}_{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    check_output_path(out, field="--out", kind="directory")
    paths = run_search(config, out, resume=args.resume, progress=not args.quiet)
    print(f"results: {paths.results_json}")
    print(f"results: {paths.results_csv}")
    print(f"pareto plot: {paths.plot_png}")
    print(f"pareto plot: {paths.plot_svg}")
    return 0
