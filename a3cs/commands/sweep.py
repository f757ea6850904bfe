"""``a3cs sweep``: run a grid of searches on Ray Tune, then summarise it."""

from __future__ import annotations

import argparse
from pathlib import Path

SWEEP_RECORD = "sweep.json"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="run a grid of searches (methods x seeds x games x any field) on Ray Tune",
        description="Expand SWEEP.yaml (a base search config, the grid, variants, the "
        "resources per trial) into trials, validate every one, run them with Ray Tune (each "
        "an `a3cs search` run directory in OUT), and write the summary table and Pareto plots "
        "per game.  A killed sweep continues with --resume.",
    )
    parser.add_argument("sweep", metavar="SWEEP.yaml", help="the sweep file")
    parser.add_argument("--out", metavar="DIR", help="sweep directory (default: "
                        "runs/sweep_<file name>)")
    parser.add_argument("--address", metavar="HOST:PORT", help="join this Ray cluster (started "
                        "with `ray start --head`); default: a local one-node Ray on 127.0.0.1")
    parser.add_argument("--resume", action="store_true", help="continue the sweep in --out: "
                        "finished trials are kept, unfinished ones continue from their "
                        "checkpoints, failed ones are retried")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from a3cs.sweep.config import expand, load_sweep
    from a3cs.sweep.runner import SweepStopped, prepare_ray, run_sweep
    from a3cs.sweep.summary import summarise
    from a3cs_common.errors import ConfigError
    from a3cs_common.io import atomic_write_text, check_output_path

    sweep, base = load_sweep(args.sweep)
    trials = expand(sweep, base, args.sweep)
    prepare_ray(args.address)  # before Ray is imported: it reads these settings then
    try:
        import ray.tune  # noqa: F401
    except ImportError:
        raise ConfigError("a3cs sweep", "without Ray", "Ray Tune installed: pip install "
                          "'a3cs[sweep]' (or pip install 'ray[tune]==2.60.0')") from None
    out = Path(args.out) if args.out else Path("runs") / f"sweep_{Path(args.sweep).stem}"
    check_output_path(out, field="--out", kind="directory")
    from a3cs.search.config import portable_paths

    # portable paths, so that a committed sweep resumes on another machine
    record = [{"name": t.name, "config": portable_paths(t.config).model_dump(mode="json")}
              for t in trials]
    if args.resume:
        saved_path = out / SWEEP_RECORD
        if not saved_path.is_file():
            raise ConfigError("--resume", str(out), f"a sweep directory holding {SWEEP_RECORD}")
        saved = _with_todays_defaults(_read_record(saved_path))
        if saved != record:
            changed = sorted({t["name"] for t in saved} ^ {t["name"] for t in record}) or \
                [a["name"] for a, b in zip(saved, record, strict=False) if a != b]
            raise ConfigError("--resume", args.sweep, "the sweep file of the sweep being "
                              f"resumed (these trials differ: {', '.join(changed[:5])})")
    elif (out / SWEEP_RECORD).exists():
        raise ConfigError("--out", str(out), "a new sweep directory (this one holds a sweep: "
                          "pass --resume to continue it)")
    print(f"sweep {args.sweep}: {len(trials)} trials -> {out}", flush=True)
    resume = f"a3cs sweep {args.sweep} --out {out} --resume"
    try:
        outcomes = run_sweep(sweep, trials, out, address=args.address, resume=args.resume,
                             progress=not args.quiet,
                             on_start=lambda: atomic_write_text(
                                 out / SWEEP_RECORD, json.dumps(record, indent=1) + "\n"))
    except SweepStopped as stop:
        print(f"a3cs sweep: error: Ray Tune stopped the sweep: {stop} (finished trials and "
              f"each trial's checkpoint are kept: {resume} continues it)", file=sys.stderr)
        return 1
    failed = [o for o in outcomes if o.status == "error"]
    unfinished = [o for o in outcomes if o.status == "unfinished"]
    done = len(outcomes) - len(failed) - len(unfinished)
    for outcome in failed:
        print(f"trial {outcome.name} failed: {outcome.error}", file=sys.stderr)
    if done:
        summary = summarise(out)
        print(summary.markdown.read_text(), end="")
        print(f"summary: {summary.markdown}")
        for plot in summary.plots:
            print(f"pareto plot: {plot}")
    print(f"{done} of {len(outcomes)} trials done"
          + (f"; {len(failed)} failed ({resume} retries them)" if failed else "")
          + (f"; {len(unfinished)} unfinished, the sweep was stopped ({resume} continues them)"
             if unfinished else ""))
    return 1 if failed or unfinished else 0


def _read_record(path: Path) -> list[dict]:
    """A sweep directory's record of its trials (``name`` and ``config`` each), or a one-line
    error for a damaged one."""
    import json

    from a3cs_common.errors import ConfigError
    from a3cs_common.io import read_text

    expected = f"the {SWEEP_RECORD} a3cs sweep writes (damaged: start a new --out)"
    try:
        saved = json.loads(read_text(path, field="--resume", expected=expected))
    except json.JSONDecodeError as exc:
        raise ConfigError("--resume", str(path), f"{expected}; JSON parse error at line "
                          f"{exc.lineno}") from None
    if not (isinstance(saved, list) and all(isinstance(t, dict) and "name" in t and "config"
                                            in t for t in saved)):
        raise ConfigError("--resume", str(path), f"{expected}; a list of trials with a name "
                          "and a config each")
    return saved


def _with_todays_defaults(saved: list[dict]) -> list[dict]:
    """A recorded sweep's trial configs as today's SearchConfig reads them, so that a field
    added since (with its default) does not make the same sweep look different; a config
    that does not read stays as it is (and so differs)."""
    from pydantic import ValidationError

    from a3cs.search.config import SearchConfig
    from a3cs_common.errors import ConfigError

    out = []
    for trial in saved:
        try:
            config = SearchConfig.model_validate(trial["config"]).model_dump(mode="json")
        except (ValidationError, ConfigError, TypeError):
            config = trial["config"]
        out.append({**trial, "config": config})
    return out
