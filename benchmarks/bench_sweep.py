"""Ray Tune's overhead in ``a3cs sweep``: the same trials run directly and through the sweep.

For a sweep file (default: experiments/sweeps/smoke.yaml) it runs every trial as a plain
``a3cs search`` process, as many at a time as the sweep would run (``max_concurrent``, else the
machine's CPUs over the trial's), and their summary (``a3cs plot DIR --summary DIR``, what the
sweep writes at its end), then the whole ``a3cs sweep``, ``--repeats`` times each in
alternation, each into a fresh folder; prints the wall times, their medians and the sweep's
overhead as a share of the direct wall time (goal: < 5 %), and writes
experiments/results/sweep_bench.json.  The sweep's Ray workers run at this process's niceness
(Ray's default, 15, would hand them less of a loaded machine than the direct runs get).

    python benchmarks/bench_sweep.py [--sweep experiments/sweeps/smoke.yaml] [--repeats 3]
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from a3cs.sweep.config import expand, load_sweep
from a3cs_common.io import atomic_write_text


def direct(sweep_path: str, out: Path, jobs: int) -> float:
    """Wall seconds of the trials as plain ``a3cs search`` processes, ``jobs`` at a time,
    then ``a3cs plot --summary`` over them (the summary and plots the sweep writes)."""
    import yaml

    sweep, base = load_sweep(sweep_path)
    trials = expand(sweep, base, sweep_path)
    out.mkdir(parents=True)

    def one(trial) -> None:
        config = out / f"{trial.name}.yaml"
        config.write_text(yaml.safe_dump(trial.config.model_dump(mode="json")))
        subprocess.run([sys.executable, "-m", "a3cs", "search", str(config), "--out",
                        str(out / trial.name), "--quiet"], check=True, capture_output=True)

    started = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, trials))
    # The sweep ends with its summary table and per-game Pareto plots; the direct runs get
    # the same, so that the difference is Ray's alone.
    subprocess.run([sys.executable, "-m", "a3cs", "plot", str(out), "--summary", str(out)],
                   check=True, capture_output=True)
    return time.perf_counter() - started


def swept(sweep_path: str, out: Path) -> float:
    """Wall seconds of ``a3cs sweep`` (Ray's start and stop included)."""
    # Ray starts its workers at nice 15; the direct runs get this process's niceness, so the
    # sweep's get it too, or any other load on the machine would slow the sweep alone.
    env = {**os.environ, "RAY_worker_niceness": str(os.nice(0))}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "a3cs", "sweep", sweep_path, "--out", str(out),
                    "--quiet"], check=True, capture_output=True, env=env)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="experiments/sweeps/smoke.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="experiments/results/sweep_bench.json")
    args = parser.parse_args()
    sweep, _ = load_sweep(args.sweep)
    jobs = sweep.max_concurrent or max(1, int((os.cpu_count() or 1) // sweep.resources.cpu))
    times: dict[str, list[float]] = {"direct": [], "sweep": []}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            times["direct"].append(direct(args.sweep, Path(scratch) / f"direct{repeat}", jobs))
            times["sweep"].append(swept(args.sweep, Path(scratch) / f"sweep{repeat}"))
            print(f"repeat {repeat}: direct {times['direct'][-1]:.1f} s, sweep "
                  f"{times['sweep'][-1]:.1f} s", flush=True)
    median = {k: statistics.median(v) for k, v in times.items()}
    overhead = median["sweep"] / median["direct"] - 1.0
    print(f"{args.sweep}: {jobs} trials at a time; median wall time direct "
          f"{median['direct']:.1f} s, sweep {median['sweep']:.1f} s; overhead "
          f"{100 * overhead:+.1f} % (goal < 5 %)")
    atomic_write_text(Path(args.out), json.dumps({
        "sweep": args.sweep, "jobs": jobs, "times_s": times, "median_s": median,
        "overhead": overhead, "cpus": os.cpu_count()}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
