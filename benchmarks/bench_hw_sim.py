"""hw_sim against SCALE-Sim v3 on SCALE-Sim's ResNet-18, and hw_sim on a small DRL agent.

Part 1, in one run: SCALE-Sim's ResNet-18 topology (``experiments/workloads/resnet18.csv``)
on a 32x32 weight-stationary array with 64 kB per operand buffer, one ``.cfg`` file written
by ``hw_sim.scalesim_files.write_scalesim_cfg`` and read by both tools (``CALC``: unlimited
bandwidth, SCALE-Sim's default mode; ``--bandwidth B`` for ``USER`` mode).  SCALE-Sim runs
once in its own venv (see ``experiments/validate_scalesim.py``) as a subprocess, traces off;
its wall time includes starting Python and parsing its files.  hw_sim: median of
``--repeats`` in-process runs of loading the same two files and simulating (half of them
just before SCALE-Sim starts, half just after it ends, so both tools see the machine's load
of the same minutes), plus one fresh process for its peak RSS.  Reported: wall time, peak
memory, simulated cycles per second, the speed ratio, whether every layer's compute cycles
are identical, and the load average (timings on a shared machine are noisy; the ratio is
measured in one run).

Part 2: a 5-layer MinAtar agent (conv 16 3x3 -> conv 32 3x3 -> FC 128 -> policy and value
heads) and the 6-layer MLP policy on ``experiments/hw/ws_32x32.yaml``: median of
``--agent-repeats`` hw_sim runs.  Targets: ratio >= 1000x, agent < 10 ms.

Part 3 (``--memory-model scalesim --bandwidth B``): hw_sim with SCALE-Sim's own memory
model against SCALE-Sim 3.0.0 in USER mode on ResNet-18, layer by layer: SCALE-Sim's per-layer
runs are taken from the caches of ``python -m hw_sim.scalesim_reference`` and
``experiments/validate_scalesim.py`` (SCALE-Sim's USER mode takes hours on some layers), and
with ``--rerun-scalesim`` every layer it finished there is run again and timed in this run,
between hw_sim's repeats of that layer; hw_sim runs every layer with ``memory_model:
scalesim`` (median of ``--repeats``).  The ratio is over the layers SCALE-Sim finished; layers it did not finish
within its time limit count with that limit in a lower bound.

    python benchmarks/bench_hw_sim.py --memory-model scalesim --bandwidth 10 --dataflow os \
        --rerun-scalesim

The figures are printed and written to ``experiments/results/bench_hw_sim.json`` (``--json``).

    python benchmarks/bench_hw_sim.py                 # runs SCALE-Sim (minutes, ~5 GB)
    python benchmarks/bench_hw_sim.py --use-cache     # SCALE-Sim figures from the cache of
                                                      # experiments/validate_scalesim.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from a3cs_common.errors import ConfigError
from a3cs_common.io import atomic_write_text
from hw_sim.files import load_hardware, load_workload
from hw_sim.scalesim_files import load_scalesim_cfg, load_topology_csv, write_scalesim_cfg
from hw_sim.simulate import simulate
from hw_sim.workload import Conv2d, Linear, Workload

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))
from validate_scalesim import (  # noqa: E402  (a script beside this one, not a package)
    ARRAYS,
    DEFAULT_VENV,
    RESULTS,
    ScaleSimCache,
    ScaleSimRun,
    compute_cycles_of,
    ensure_scalesim_venv,
    hardware,
    measure_hw_sim,
    run_scalesim,
)

RESNET18 = REPO / "experiments" / "workloads" / "resnet18.csv"
AGENT_HW = REPO / "experiments" / "hw" / "ws_32x32.yaml"
RATIO_TARGET = 1000.0
AGENT_TARGET_S = 10e-3
DEFAULT_JSON = RESULTS / "bench_hw_sim.json"


def minatar_agent_5_layers() -> Workload:
    """MinAtar's reference agent with a second convolution: five layers, batch 1."""
    return Workload(name="minatar_5_layer", layers=(
        Conv2d(name="conv1", in_channels=4, out_channels=16, in_height=10, in_width=10,
               kernel_size=3),
        Conv2d(name="conv2", in_channels=16, out_channels=32, in_height=8, in_width=8,
               kernel_size=3),
        Linear(name="fc", in_features=32 * 6 * 6, out_features=128),
        Linear(name="policy", in_features=128, out_features=6),
        Linear(name="value", in_features=128, out_features=1),
    ))


def time_hw_sim(topology: Path, cfg: Path, repeats: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of ``repeats`` runs of loading both files and simulating."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        simulate(load_topology_csv(topology), load_scalesim_cfg(cfg))
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus


def traced_peak_mb(topology: Path, cfg: Path) -> float:
    """Peak Python heap allocated by one hw_sim run (tracemalloc), in MB."""
    tracemalloc.start()
    simulate(load_topology_csv(topology), load_scalesim_cfg(cfg))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 1e6


def scalesim_run(args: argparse.Namespace, cfg: Path) -> tuple[ScaleSimRun, str]:
    """SCALE-Sim on ResNet-18: a fresh run, or with ``--use-cache`` the cached one."""
    venv = args.venv.expanduser()
    versions = ensure_scalesim_venv(venv)
    python = venv / "bin" / "python"
    if args.use_cache:
        cache = ScaleSimCache(RESULTS / "scalesim_cache", python, versions)
        path = cache.folder / f"{cache.key(cfg, RESNET18)}.json"
        if path.exists():
            return ScaleSimRun(**json.loads(path.read_text())), f"cached ({path.name})"
        print("no cached SCALE-Sim run for this cfg; running it")
    print(f"running SCALE-Sim {versions['scalesim']} on ResNet-18 (minutes) ...", flush=True)
    return run_scalesim(python, cfg, RESNET18, args.scalesim_timeout), "measured in this run"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="hw_sim ResNet-18 repeats")
    parser.add_argument("--agent-repeats", type=int, default=200, help="hw_sim agent repeats")
    parser.add_argument("--bandwidth", type=int, default=None,
                        help="DRAM words/cycle (USER mode); default: CALC (unlimited)")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV,
                        help=f"SCALE-Sim's venv (created if missing; default {DEFAULT_VENV})")
    parser.add_argument("--use-cache", action="store_true",
                        help="take SCALE-Sim's figures from experiments/results/scalesim_cache "
                        "when that run is there (not measured in this run)")
    parser.add_argument("--scalesim-timeout", type=float, default=7200.0,
                        help="seconds before SCALE-Sim is stopped (default 7200)")
    parser.add_argument("--memory-model", choices=("default", "scalesim"), default="default",
                        help="scalesim: part 3 only (needs --bandwidth; SCALE-Sim from caches)")
    parser.add_argument("--rerun-scalesim", action="store_true",
                        help="with --memory-model scalesim: run SCALE-Sim again on every layer "
                        "it finished before (minutes to hours), each run between two hw_sim "
                        "timings of the same layer, so both tools are timed in this run")
    parser.add_argument("--dataflow", choices=("ws", "os", "is"), default="ws",
                        help="the array's dataflow (default ws)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON,
                        help=f"write the figures to this JSON file (default {DEFAULT_JSON})")
    args = parser.parse_args(argv)
    try:
        for flag, value in (("--repeats", args.repeats), ("--agent-repeats", args.agent_repeats)):
            if value < 1:
                raise ConfigError(flag, value, "an integer >= 1")
        if args.bandwidth is not None and args.bandwidth < 1:
            raise ConfigError("--bandwidth", args.bandwidth, "a positive integer (words/cycle)")
        if args.memory_model == "scalesim":
            if args.bandwidth is None:
                raise ConfigError("--bandwidth", None, "a number of words per cycle with "
                                  "--memory-model scalesim (SCALE-Sim's USER mode)")
            with tempfile.TemporaryDirectory(prefix="bench_hw_sim_") as tmp:
                return run_scalesim_memory(args, Path(tmp))
        with tempfile.TemporaryDirectory(prefix="bench_hw_sim_") as tmp:
            return run(args, Path(tmp))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run_scalesim_memory(args: argparse.Namespace, tmp: Path) -> int:
    """Part 3: ResNet-18 per layer, hw_sim's scalesim memory model against cached SCALE-Sim
    USER-mode runs."""
    from hw_sim.scalesim_memory import simulate_scalesim_layer
    from hw_sim.scalesim_reference import (
        DEFAULT_CACHE,
        SEED_CACHE,
        cache_key,
        layer_record,
        records_by_shape,
        trace_kind,
        usable_record,
    )
    from hw_sim.scalesim_reference import run_scalesim as run_scalesim_layer

    hw = hardware(ARRAYS["32x32"], args.dataflow, args.bandwidth)
    cfg = write_scalesim_cfg(hw, tmp / f"{hw.name}.cfg")
    ours_hw = load_scalesim_cfg(cfg, memory_model="scalesim")
    versions = ensure_scalesim_venv(args.venv.expanduser())
    lines = [line for line in RESNET18.read_text().splitlines() if line.strip()]
    header, rows = lines[0], lines[1:]
    workload = load_topology_csv(RESNET18)
    finished, limited, missing = [], [], []
    # Layers only SCALE-Sim with its read buffers' trace extremes finished (SCALE-Sim as
    # shipped cannot): their cycles are checked, but they are not timed against.
    extremes = []
    records = [usable_record(cache_key(versions, cfg.read_text(), f"{header}\n{row}\n"),
                       [DEFAULT_CACHE, SEED_CACHE], 0.0, "full") for row in rows]
    by_shape = records_by_shape(rows, records)  # a layer of the same shape ran
    for index, (row, record) in enumerate(zip(rows, records, strict=True)):
        record = layer_record(row, record, by_shape)
        if record is None:
            missing.append(index)
        elif record["status"] != "ok":
            limited.append((index, record))
        elif trace_kind(record) == "extremes":
            extremes.append((index, record))
        else:
            finished.append((index, record))
    load_before = os.getloadavg()
    per_layer: list[list[float]] = [[] for _ in rows]

    def timed(index: int, repeats: int) -> None:
        for _ in range(repeats):
            start = time.perf_counter()
            simulate_scalesim_layer(workload.layers[index], ours_hw)
            per_layer[index].append(time.perf_counter() - start)

    if args.rerun_scalesim:
        # SCALE-Sim again on each finished layer, between two halves of hw_sim's repeats.
        python = args.venv.expanduser() / "bin" / "python"
        rerun = []
        for position, (index, record) in enumerate(finished):
            single = tmp / f"layer_{index:02d}.csv"
            single.write_text(f"{header}\n{rows[index]}\n")
            timed(index, max(1, args.repeats // 2))
            print(f"SCALE-Sim layer {index} ({position + 1} of {len(finished)}) ...",
                  flush=True)
            fresh = run_scalesim_layer(python, cfg, single, False, 4 * record["wall_s"] + 600)
            if fresh["status"] != "ok" or fresh["layers"] != record["layers"]:
                print(f"layer {index}: SCALE-Sim's rerun differs from its cached run "
                      f"({fresh['status']})")
                return 1
            rerun.append((index, fresh))
            timed(index, args.repeats - max(1, args.repeats // 2))
        finished = rerun
    for _ in range(args.repeats):  # layers SCALE-Sim was not rerun on: repeat after repeat
        for index in range(len(rows)):
            timed(index, int(len(per_layer[index]) < args.repeats))
    for index, record in [*finished, *extremes]:  # the cycles, checked once
        theirs = record["layers"][0]
        result = simulate_scalesim_layer(workload.layers[index], ours_hw)
        if (result.total_cycles_incl_prefetch, result.stall_cycles) != (
                int(theirs["Total Cycles (incl. prefetch)"]), int(theirs["Stall Cycles"])):
            print(f"layer {index}: cycles differ from SCALE-Sim's")
            return 1
    load_after = os.getloadavg()
    median = [statistics.median(times) for times in per_layer]
    ss_finished = sum(record["wall_s"] for _, record in finished)
    ours_finished = sum(median[i] for i, _ in finished)
    ss_bound = ss_finished + sum(record["wall_s"] for _, record in limited)
    ours_measured = sum(median[i] for i in [*(i for i, _ in finished), *(i for i, _ in limited)])
    figures = {
        "memory_model": "scalesim", "dataflow": args.dataflow, "bandwidth": args.bandwidth,
        "layers": len(rows), "scalesim_finished_layers": len(finished),
        "scalesim_limited_layers": len(limited), "scalesim_missing_layers": len(missing),
        "scalesim_extremes_only_layers": len(extremes),
        "scalesim_timed_in_this_run": args.rerun_scalesim,
        "scalesim_wall_s_finished": ss_finished,
        "hw_sim_median_s_finished": ours_finished,
        "speed_ratio_finished": ss_finished / ours_finished if ours_finished else None,
        "speed_ratio_lower_bound_with_limited": ss_bound / ours_measured if limited else None,
        "hw_sim_median_s_all_layers": sum(median),
        "ratio_target_met": bool(finished) and ss_finished / ours_finished >= RATIO_TARGET,
        "cpus": os.cpu_count(), "loadavg_1_5_15_before": load_before,
        "loadavg_1_5_15_after": load_after,
    }
    print(f"""
ResNet-18 on a 32x32 {args.dataflow.upper()} array, 64 kB per operand, {args.bandwidth} words/cycle (USER);
hw_sim with memory_model scalesim (cycles checked equal to SCALE-Sim's on every finished layer)
  SCALE-Sim 3.0.0   {len(finished)} layers finished: {ss_finished:,.1f} s \
({'timed in this run' if args.rerun_scalesim else 'from its cache'})   \
({len(limited)} stopped at their time limit, {len(missing)} never run, {len(extremes)} \
finished only with --read-buffer-trace extremes: cycles checked, not timed)
  hw_sim            the same layers: {ours_finished:,.2f} s (median of {args.repeats}); \
all {len(rows)} layers {sum(median):,.2f} s
  speed ratio       {figures['speed_ratio_finished'] or 0:,.0f}x on the finished layers   \
(target >= {RATIO_TARGET:,.0f}x: {'met' if figures['ratio_target_met'] else 'NOT met'})""")
    if limited:
        print(f"  lower bound       {figures['speed_ratio_lower_bound_with_limited']:,.0f}x "
              "counting the stopped layers at their limit")
    print(f"  machine           {os.cpu_count()} CPUs, load average (1 min) "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after")
    atomic_write_text(args.json, json.dumps(figures, indent=2) + "\n")
    print(f"figures written to {args.json}")
    return 0


def run(args: argparse.Namespace, tmp: Path) -> int:
    hw = hardware(ARRAYS["32x32"], args.dataflow, args.bandwidth)
    cfg = write_scalesim_cfg(hw, tmp / f"{hw.name}.cfg")

    load_before = os.getloadavg()
    ours = simulate(load_topology_csv(RESNET18), load_scalesim_cfg(cfg))
    times, cpu_times = time_hw_sim(RESNET18, cfg, args.repeats // 2)
    start = time.perf_counter()
    fresh = measure_hw_sim(RESNET18, cfg, 1)  # start Python, import, load, simulate once
    process_wall = time.perf_counter() - start
    heap_mb = traced_peak_mb(RESNET18, cfg)
    theirs, provenance = scalesim_run(args, cfg)
    after, cpu_after = time_hw_sim(RESNET18, cfg, args.repeats - args.repeats // 2)
    times, cpu_times = times + after, cpu_times + cpu_after
    load_after = os.getloadavg()
    if theirs.status != "ok":
        print(f"SCALE-Sim did not finish ({theirs.status} after {theirs.wall_s:.0f} s) "
              f"{theirs.message}")
        return 1
    ss_compute = [compute_cycles_of(layer) for layer in theirs.layers]
    hw_compute = [layer.compute_cycles for layer in ours.layers]
    identical = ss_compute == hw_compute
    ss_cycles = sum(int(layer["Total Cycles"]) for layer in theirs.layers)
    hw_median = statistics.median(times)
    hw_cpu = statistics.median(cpu_times)
    ratio = theirs.wall_s / hw_median

    agent_hw = load_hardware(str(AGENT_HW))
    agents = {"minatar_5_layer": minatar_agent_5_layers(),
              "mlp_policy": load_workload(str(REPO / "experiments/workloads/mlp_policy.yaml"))}
    agent_times = {}
    for name, workload in agents.items():
        samples = []
        for _ in range(args.agent_repeats):
            start = time.perf_counter()
            simulate(workload, agent_hw)
            samples.append(time.perf_counter() - start)
        agent_times[name] = statistics.median(samples)

    figures = {
        "cfg": cfg.read_text(), "scalesim_provenance": provenance,
        "scalesim_wall_s": theirs.wall_s, "scalesim_peak_rss_mb": theirs.peak_rss_mb,
        "scalesim_total_cycles": ss_cycles,
        "scalesim_cycles_per_s": ss_cycles / theirs.wall_s,
        "scalesim_cpu_s": theirs.cpu_s,
        "hw_sim_median_s": hw_median, "hw_sim_min_s": min(times), "hw_sim_cpu_median_s": hw_cpu,
        "hw_sim_process_peak_rss_mb": fresh["peak_rss_mb"],
        "hw_sim_process_wall_s": process_wall,
        "hw_sim_traced_heap_peak_mb": heap_mb, "hw_sim_total_cycles": ours.total_cycles,
        "hw_sim_cycles_per_s": ours.total_cycles / hw_median,
        "speed_ratio": ratio, "compute_cycles_identical": identical,
        "layers": len(hw_compute), "agent_median_s": agent_times,
        "agent_target_met": agent_times["minatar_5_layer"] < AGENT_TARGET_S,
        "ratio_target_met": ratio >= RATIO_TARGET,
        "cpus": os.cpu_count(), "loadavg_1_5_15_before": load_before,
        "loadavg_1_5_15_after": load_after,
    }
    cpu_text = "n/a (cached record)" if theirs.cpu_s is None else f"{theirs.cpu_s:.1f} s"
    cpu_ratio = "n/a" if theirs.cpu_s is None else f"{theirs.cpu_s / hw_cpu:,.0f}x"
    bw = "unlimited (CALC)" if args.bandwidth is None else f"{args.bandwidth} words/cycle (USER)"
    print(f"""
ResNet-18 (SCALE-Sim topology, {len(hw_compute)} layers) on a 32x32 WS array, 64 kB per
operand, bandwidth {bw}; the same .cfg for both tools
  SCALE-Sim 3.0.0   wall {theirs.wall_s:9.1f} s     peak RSS {theirs.peak_rss_mb:8,.0f} MB   \
{ss_cycles / theirs.wall_s:12,.0f} cycles/s   [{provenance}]
  hw_sim (event)    wall {hw_median * 1e3:9.1f} ms    peak RSS {fresh['peak_rss_mb']:8,.0f} MB   \
{ours.total_cycles / hw_median:12,.0f} cycles/s   [median of {args.repeats}, min \
{min(times) * 1e3:.1f} ms; heap peak {heap_mb:.1f} MB]
  simulated cycles  SCALE-Sim {ss_cycles:,}   hw_sim {ours.total_cycles:,}
  compute cycles    {'identical in all' if identical else 'DIFFERENT in some of the'} \
{len(hw_compute)} layers
  speed ratio       {ratio:,.0f}x   (target >= {RATIO_TARGET:,.0f}x: \
{'met' if ratio >= RATIO_TARGET else 'NOT met'})
  CPU time          SCALE-Sim {cpu_text}   hw_sim {hw_cpu * 1e3:.1f} ms (median): \
{cpu_ratio}
  as processes      hw_sim started fresh (Python, imports, one run) {process_wall:.2f} s: \
{theirs.wall_s / process_wall:,.0f}x
  machine           {os.cpu_count()} CPUs, load average (1 min) {load_before[0]:.2f} before, \
{load_after[0]:.2f} after{' (loaded: other jobs shared the CPUs)' if max(load_before[0], load_after[0]) >= 1 else ''}

DRL agents on {AGENT_HW.relative_to(REPO)} (median of {args.agent_repeats} runs)""")
    for name, seconds in agent_times.items():
        layers = len(agents[name].layers)
        verdict = ("met" if seconds < AGENT_TARGET_S else "NOT met") if layers == 5 else ""
        target = f"   (target < 10 ms: {verdict})" if verdict else ""
        print(f"  {name:16s} {layers} layers   {seconds * 1e3:7.2f} ms{target}")
    atomic_write_text(args.json, json.dumps(figures, indent=2) + "\n")
    print(f"figures written to {args.json}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
