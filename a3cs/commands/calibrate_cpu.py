"""``a3cs calibrate-cpu``: time real kernels on this machine and fit the CPU latency model."""

from __future__ import annotations

import argparse

from a3cs_common.cli import seed_int

DEFAULT_OUT = "experiments/results/cpu_host_profile.json"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate-cpu",
        help="time dense / 1xN / block-circulant kernels here and fit a CPU latency profile",
        description="Draw layer shapes per kernel family, time their real kernels (torch dense "
        "conv/linear, scipy BSR for 1xN, torch.fft for block-circulant) interleaved with a "
        "canary, fit the additive model and residual trees on the training shapes, report the "
        "share of held-out predictions within +-10 %% of measured, and save the profile "
        "(JSON) that `--target cpu:PROFILE` and accelerator_model.cpu.load_cpu_profile read.",
    )
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="PROFILE.json",
                        help=f"where the profile goes (default: {DEFAULT_OUT}); the raw "
                        "measurements, a held-out CSV and a fit plot go beside it")
    parser.add_argument("--per-family", type=int, default=400, metavar="N",
                        help="training shapes per kernel family (default 400; >= 20)")
    parser.add_argument("--held-out", type=int, default=80, metavar="N",
                        help="held-out shapes per kernel family (default 80)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads while timing (default 1: CPU-time clock)")
    parser.add_argument("--rounds", type=int, default=16, help="interleaved rounds (default 16)")
    parser.add_argument("--samples", type=int, default=4,
                        help="timed samples per kernel and round (default 4)")
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of shapes and order")
    parser.add_argument("--no-residual", action="store_true",
                        help="fit the additive model only (no residual trees)")
    parser.add_argument("--update-reference", action="store_true",
                        help="also make this fit's additive coefficients the ones the presets "
                        "(cortex-a7, cortex-a76, host) use: accelerator_model/data/"
                        "cpu_reference.json")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="continue the measurements of a killed run with the same options")
    mode.add_argument("--refit", action="store_true",
                      help="fit again from the finished measurements file, timing nothing")
    parser.set_defaults(run=run)


def _check(args: argparse.Namespace) -> None:
    import os

    from a3cs_common.errors import ConfigError
    from a3cs_common.io import check_output_path

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    limits = {"--per-family": (args.per_family, 20), "--held-out": (args.held_out, 1),
              "--rounds": (args.rounds, 1), "--samples": (args.samples, 1)}
    for flag, (value, low) in limits.items():
        if value < low:
            raise ConfigError(flag, value, f"an integer >= {low}")
    if not 1 <= args.threads <= (cores or 1):
        raise ConfigError("--threads", args.threads, f"an integer in [1, {cores}] (this "
                          "machine's CPUs)")
    if not args.out.endswith(".json"):
        raise ConfigError("--out", args.out, "a path ending in .json")
    check_output_path(args.out, field="--out")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    _check(args)

    import numpy as np
    from tqdm import tqdm

    from accelerator_model.cpu import (
        FAMILIES,
        REFERENCE_PROFILE,
        kernel_family,
        save_cpu_profile,
    )
    from accelerator_model.cpu_calibrate import (
        CalibrationConfig,
        calibrate,
        progress_total,
        refit,
        write_fit_plot,
        write_heldout_csv,
    )

    out = Path(args.out)
    state_path = out.with_name(out.stem + "_measurements.json")
    if args.refit:
        result = refit(state_path, residual=not args.no_residual)
    else:
        config = CalibrationConfig(
            per_family=args.per_family, held_out_per_family=args.held_out, seed=args.seed,
            threads=args.threads, rounds=args.rounds, samples=args.samples,
            residual=not args.no_residual)
        with tqdm(total=progress_total(config), unit="kernel-round", desc="timing kernels",
                  smoothing=0.05) as bar:
            result = calibrate(config, state_path, resume=args.resume, progress=bar.update)
    save_cpu_profile(result.profile, out)
    if args.update_reference:
        save_cpu_profile(result.profile.model_copy(update={"residuals": {}}), REFERENCE_PROFILE)
    csv_path = write_heldout_csv(result, out.with_name(out.stem + "_heldout.csv"))
    plot_paths = write_fit_plot(result, out.with_name(out.stem + "_fit"))

    summary = result.profile.calibration
    assert summary is not None
    families = np.array([kernel_family(m.layer, result.profile.spec.threads)
                         for m in result.measured])
    held = np.array([m.held_out for m in result.measured])
    print(f"{'family':16s}{'train':>7s}{'held':>6s}{'additive':>10s}{'model':>8s}{'cv':>8s}  "
          "residual model (share within +-10 %: held-out; cv: 5-fold on the training shapes, "
          "which chose the residual model)")
    for family in FAMILIES:
        n_train = int(np.sum((families == family) & ~held))
        n_held = int(np.sum((families == family) & held))
        additive = result.analytic_held_out.per_family_within_10pct.get(family, float("nan"))
        model = result.held_out.per_family_within_10pct.get(family, float("nan"))
        cv = summary.per_family_cv_within_10pct.get(family, float("nan"))
        choice = summary.per_family_model.get(family, "-")
        print(f"{family:16s}{n_train:7d}{n_held:6d}{additive:10.1%}{model:8.1%}{cv:8.1%}  "
              f"{choice}")
    print(f"held-out shapes within +-10 % of measured: {result.held_out.within_10pct:.1%} "
          f"(additive model alone {result.analytic_held_out.within_10pct:.1%}; median |error| "
          f"{result.held_out.median_abs_error:.1%}); the measurement itself repeats within "
          f"+-10 % on {result.repeatability_within_10pct:.1%} of them")
    load = ", ".join(f"{v:.2f}" for v in summary.load_average)
    print(f"conditions: {summary.host}, load average {load} at the start; canary median "
          f"{summary.canary_median_s * 1e6:.1f} us; threads {summary.timing['threads']}, "
          f"{summary.timing['rounds']} rounds x {summary.timing['samples']} samples, "
          f"torch {summary.torch_version}, scipy {summary.scipy_version}")
    print(f"profile: {out}\nmeasurements: {state_path}\nheld-out table: {csv_path}\n"
          f"fit plot: {', '.join(str(p) for p in plot_paths)}")
    if args.update_reference:
        print(f"preset coefficients: {REFERENCE_PROFILE}")
    return 0
