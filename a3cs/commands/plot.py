"""``a3cs plot``: score-vs-efficiency Pareto fronts across runs and methods."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="plot test score against FPS / latency / energy per method, with Pareto fronts",
        description="Read results.json from each RUN_DIR, draw score against an efficiency "
        "metric per method (non-dominated points marked, each method's front as a step line), "
        "write PNG and SVG, and print each method's hypervolume.  A sweep directory (a3cs "
        "sweep) also gets its summary table and a Pareto plot per game.",
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="run directories (or folders holding run directories)")
    parser.add_argument("--x", choices=("fps", "latency", "energy"), default="fps",
                        help="efficiency metric on the x axis (default: fps)")
    parser.add_argument("--out", metavar="PATH", default=None,
                        help="output file stem (default: pareto_<x> in the first RUN_DIR); "
                        ".png and .svg are written")
    parser.add_argument("--title", default=None, help="plot title")
    parser.add_argument("--summary", metavar="DIR", default=None,
                        help="write one summary table (summary.md/.csv/.json: mean +- std per "
                        "method and game, FPS against hand_designed, hypervolume, the goal) "
                        "and a Pareto plot per game over all RUN_DIRs into DIR, e.g. several "
                        "sweeps of one evidence grid (default: each sweep directory gets its "
                        "own)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip a run whose results.json is damaged, with a warning (default: "
                        "stop with an error naming it)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from a3cs.plotting import collect_runs, plot_pareto
    from a3cs_common.errors import ConfigError
    from a3cs_common.io import check_output_path

    if args.summary is not None:
        check_output_path(args.summary, field="--summary", kind="directory")
    first = Path(args.summary) if args.summary is not None else Path(args.run_dirs[0])
    stem = Path(args.out) if args.out else first / f"pareto_{args.x}"
    if stem.is_dir():
        raise ConfigError("--out", args.out, "a file stem, e.g. DIR/pareto (this is a "
                          "directory)")
    for suffix in (".png", ".svg"):
        check_output_path(stem.with_suffix(suffix), field="--out")

    def warn(error: ConfigError) -> None:
        print(f"a3cs plot: warning: skipped: {error}", file=sys.stderr)

    rows = collect_runs([Path(p) for p in args.run_dirs],
                        on_bad=warn if args.skip_bad else None)
    stem.parent.mkdir(parents=True, exist_ok=True)
    figure = plot_pareto(rows, args.x, stem, title=args.title)
    print(f"{'method':<20} {'runs':>4} {'front':>5} {'hypervolume':>12} "
          f"{'a seed (mean +- std)':>22}")
    for method, stats in figure.methods.items():
        print(f"{method:<20} {stats.runs:>4} {stats.front_size:>5} {stats.hypervolume:>12.4f} "
              f"{stats.seed_hypervolume_mean:>12.4f} +- {stats.seed_hypervolume_std:.4f}")
    print(f"hypervolume: normalised objectives, reference at the worst value - 10 % of the "
          f"range (max {1.21:.2f})")
    print(f"plot: {figure.png}\nplot: {figure.svg}")
    from a3cs.sweep.summary import summarise

    summaries = ([summarise(Path(args.summary), [Path(p) for p in args.run_dirs])]
                 if args.summary is not None else
                 [summarise(Path(p)) for p in args.run_dirs  # each sweep's own table
                  if (Path(p) / "sweep.json").is_file()])
    for summary in summaries:
        print(f"summary: {summary.markdown}")
        for plot in summary.plots:
            print(f"pareto plot: {plot}")
    return 0
