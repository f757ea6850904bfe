"""Simulate a workload on a hardware configuration.

Two engines with the same semantics:

* ``"event"`` (default): advances whole steps, with closed-form compute timing per step and
  the memory model of :mod:`hw_sim.schedule` applied per run of identical steps.
* ``"stepper"``: the reference; advances one cycle at a time, walking each engine's
  per-cycle activity and moving at most ``B`` words a cycle over the DRAM channel.  It can
  write a cycle trace.  Use it on small layers.

Both must report the same cycles, stalls and access counts; the test suite checks that on
random layers and configurations.

With ``hw.memory_model == "scalesim"`` and a finite bandwidth the stalls come from
:mod:`hw_sim.scalesim_memory` instead (SCALE-Sim 3.0.0's own memory system, event engine
only); compute cycles and SRAM counts are the engines' as always.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal

from a3cs_common.errors import ConfigError
from hw_sim.engines import Engine, engine_for
from hw_sim.hardware import ActionEnergy, Hardware
from hw_sim.power import static_power
from hw_sim.report import LayerReport, SimReport, energy_of
from hw_sim.scalesim_memory import ScaleSimLayerCycles, geometry_of, simulate_scalesim_layer
from hw_sim.schedule import (
    COUNT_FIELDS,
    DramTraffic,
    OpCounts,
    StepRun,
    Timeline,
    dram_traffic,
    memory_timeline,
)
from hw_sim.workload import Conv2d, Linear, Workload

EngineName = Literal["event", "stepper"]

TRACE_COLUMNS = ("layer", "cycle", "step", "phase", *COUNT_FIELDS, "dram_read_words",
                 "dram_write_words")


def simulate(
    workload: Workload,
    hw: Hardware,
    *,
    engine: EngineName = "event",
    trace_layer: str | None = None,
    trace_file: IO[str] | None = None,
) -> SimReport:
    """Simulate every layer of ``workload`` on ``hw``.

    Args:
        workload: the layers, run one after another.
        hw: the hardware configuration.
        engine: ``"event"`` (fast) or ``"stepper"`` (per cycle).
        trace_layer: name of a layer to trace cycle by cycle (always uses the stepper for it).
        trace_file: open text file the CSV trace is written to (required with ``trace_layer``).

    Returns:
        The per-layer and total report.

    Raises:
        ConfigError: the hardware cannot run a layer (no engine for its format, an SRAM smaller
            than one tile), ``trace_layer`` names no layer, or the stepper or a trace is asked
            for with ``memory_model: scalesim`` and a finite bandwidth.
    """
    if trace_layer is not None:
        workload.layer(trace_layer)  # raises ConfigError naming the known layers
    if _scalesim_memory(hw):
        if engine != "event":
            raise ConfigError("engine", engine, "'event' with memory_model 'scalesim' (the "
                              "per-cycle stepper models hw_sim's own memory system)")
        if trace_layer is not None:
            raise ConfigError("trace_layer", trace_layer, "none with memory_model 'scalesim' "
                              "(cycle traces come from the stepper, which models hw_sim's own "
                              "memory system)")
        for layer in workload.layers:
            geometry_of(layer)  # every layer SCALE-Sim can run, checked before any work
    table = hw.energy_per_action()
    on_chip = weights_stay_on_chip(workload, hw)
    reports = []
    for layer in workload.layers:
        try:
            if layer.name == trace_layer:
                report = simulate_layer(layer, hw, engine="stepper", table=table,
                                        trace_file=trace_file, weights_on_chip=on_chip)
            else:
                report = simulate_layer(layer, hw, engine=engine, table=table,
                                        weights_on_chip=on_chip)
        except ConfigError as exc:
            raise ConfigError(exc.field, exc.value, f"{exc.allowed} [layer '{layer.name}']",
                              source=exc.source) from None
        reports.append(report)
    return SimReport(
        workload=workload.name, hardware=hw.name,
        source=f"hw_sim/{engine}" + (", SCALE-Sim memory model" if _scalesim_memory(hw) else ""),
        clock_mhz=hw.clock_mhz, batch=workload.layers[0].batch, layers=tuple(reports),
        weights_on_chip=on_chip, static_power_mw=static_power(hw).as_dict(),
    )


def _scalesim_memory(hw: Hardware) -> bool:
    """Whether stalls come from SCALE-Sim's memory model (with unlimited bandwidth neither
    model stalls, and SCALE-Sim's CALC mode has no memory system to reproduce)."""
    return hw.memory_model == "scalesim" and hw.dram.bandwidth_words_per_cycle is not None


def weights_stay_on_chip(workload: Workload, hw: Hardware) -> bool:
    """Whether the network's weights stay in the filter buffer between inferences: asked for
    by ``hw.keep_weights_on_chip`` and possible because they all fit."""
    return hw.keep_weights_on_chip and workload.stored_weight_words <= hw.sram_words("filter")


def simulate_layer(
    layer: Conv2d | Linear,
    hw: Hardware,
    *,
    engine: EngineName = "event",
    table: ActionEnergy | None = None,
    trace_file: IO[str] | None = None,
    weights_on_chip: bool = False,
) -> LayerReport:
    """Simulate one layer; see :func:`simulate`.  ``weights_on_chip``: the layer's weights are
    already in the filter buffer (see :func:`weights_stay_on_chip`)."""
    unit = engine_for(layer, hw)
    runs = unit.plan(layer, hw, weights_on_chip)
    scalesim: ScaleSimLayerCycles | None = None
    if _scalesim_memory(hw) and engine != "event":
        raise ConfigError("engine", engine, "'event' with memory_model 'scalesim' (the "
                          "per-cycle stepper models hw_sim's own memory system)")
    if _scalesim_memory(hw):
        timeline, counts, _ = _event(runs, unit, hw)
        scalesim = simulate_scalesim_layer(layer, hw)
        # SCALE-Sim's accounting: the span from the first prefetch to the last drain, its
        # stall count, and its DRAM word counts (whole B-word rows, padding included).
        timeline = Timeline(scalesim.total_cycles_incl_prefetch + 1,
                            timeline.compute_occupancy_cycles)
        traffic = DramTraffic(scalesim.ifmap_dram_reads, scalesim.filter_dram_reads, 0,
                              scalesim.ofmap_dram_writes)
    elif engine == "event":
        timeline, counts, traffic = _event(runs, unit, hw)
    elif engine == "stepper":
        writer = csv.writer(trace_file) if trace_file is not None else None
        if writer is not None:
            writer.writerow(TRACE_COLUMNS)
        timeline, counts, traffic = _stepper(runs, unit, hw, layer.name, writer)
    else:
        raise ConfigError("engine", engine, "'event' or 'stepper'")
    energy = energy_of(counts, traffic, table or hw.energy_per_action())
    occupancy = timeline.occupancy_cycles
    return LayerReport(
        name=layer.name,
        engine=unit.name,
        weight_format=layer.weight_format.type,
        total_cycles=timeline.total_cycles,
        compute_cycles=timeline.compute_cycles,
        stall_cycles=timeline.stall_cycles if scalesim is None else scalesim.stall_cycles,
        utilization=unit.useful_ops(counts) / (unit.peak_ops_per_cycle(hw) * occupancy),
        **{name: getattr(counts, name) for name in COUNT_FIELDS},
        ifmap_dram_reads=traffic.ifmap_reads,
        filter_dram_reads=traffic.filter_reads,
        psum_dram_reads=traffic.psum_reads,
        ofmap_dram_writes=traffic.ofmap_writes,
        compute_energy_pj=energy.compute_pj,
        sram_energy_pj=energy.sram_pj,
        dram_energy_pj=energy.dram_pj,
        latency_s=timeline.total_cycles / hw.clock_hz,
    )


def _event(runs: list[StepRun], unit: Engine, hw: Hardware) -> tuple[Timeline, OpCounts, DramTraffic]:
    cache: dict[object, tuple[int, OpCounts]] = {}
    cycles: list[int] = []
    totals = [0] * len(COUNT_FIELDS)
    for run in runs:
        cost = cache.get(run.work)
        if cost is None:
            cost = cache[run.work] = unit.step_cost(run.work, hw)
        cycles.append(cost[0])
        for i, value in enumerate(cost[1].as_tuple()):
            totals[i] += value * run.repeat
    timeline = memory_timeline(runs, cycles, hw.dram.bandwidth_words_per_cycle)
    return timeline, OpCounts.from_tuple(totals), dram_traffic(runs)


def _transfers(run: StepRun) -> list[list]:
    return [["ifmap", run.ifmap_load_words], ["filter", run.filter_load_words],
            ["psum", run.psum_load_words]]


def _stepper(
    runs: list[StepRun], unit: Engine, hw: Hardware, layer_name: str, writer: csv.writer | None
) -> tuple[Timeline, OpCounts, DramTraffic]:
    """Advance one cycle at a time: the engine's per-cycle activity on one side, the DRAM
    channel moving up to ``B`` words a cycle from the current window's queue on the other."""
    bandwidth = hw.dram.bandwidth_words_per_cycle
    steps = [(run, rep) for run in runs for rep in range(run.repeat)]
    totals = [0] * len(COUNT_FIELDS)
    moved = {"ifmap": 0, "filter": 0, "psum": 0, "store": 0}
    cycle = 0
    compute_occupancy = 0
    idle = (0,) * len(COUNT_FIELDS)

    def channel(queue: list[list]) -> tuple[int, int]:
        """Move one cycle's worth of words; return (read words, write words) moved."""
        budget = bandwidth if bandwidth is not None else sum(words for _, words in queue)
        reads = writes = 0
        for item in queue:
            take = min(budget, item[1])
            item[1] -= take
            budget -= take
            moved[item[0]] += take
            if item[0] == "store":
                writes += take
            else:
                reads += take
        return reads, writes

    def pending(queue: list[list]) -> bool:
        return any(words > 0 for _, words in queue)

    def emit(step: int, phase: str, activity: tuple[int, ...], rw: tuple[int, int]) -> None:
        if writer is not None:
            writer.writerow((layer_name, cycle, step, phase, *activity, *rw))

    queue = _transfers(steps[0][0])
    if bandwidth is None:
        channel(queue)  # unlimited bandwidth: the prologue takes no time
    while pending(queue):
        rw = channel(queue)
        emit(-1, "prologue", idle, rw)
        cycle += 1
    for index, (run, repetition) in enumerate(steps):
        queue = _transfers(steps[index + 1][0]) if index + 1 < len(steps) else []
        if index > 0:
            queue.append(["store", steps[index - 1][0].store_words])
        activity: Iterator[tuple[int, ...]] = unit.cycle_activity(run.work, hw, repetition)
        current = next(activity, None)
        if current is None:
            raise AssertionError(f"engine {unit.name} produced a step with no cycles")
        while current is not None or pending(queue):
            rw = channel(queue) if pending(queue) else (0, 0)
            if current is not None:
                for i, value in enumerate(current):
                    totals[i] += value
                compute_occupancy += 1
                emit(index, "compute", current, rw)
                current = next(activity, None)
            else:
                emit(index, "stall", idle, rw)
            cycle += 1
    queue = [["store", steps[-1][0].store_words]]
    if bandwidth is None:
        channel(queue)
    while pending(queue):
        rw = channel(queue)
        emit(len(steps), "epilogue", idle, rw)
        cycle += 1
    traffic = DramTraffic(moved["ifmap"], moved["filter"], moved["psum"], moved["store"])
    return Timeline(cycle, compute_occupancy), OpCounts.from_tuple(totals), traffic


def write_trace(workload: Workload, hw: Hardware, layer_name: str, path: str | Path, *,
                engine: EngineName = "event") -> SimReport:
    """Simulate ``workload`` (other layers with ``engine``) and write the cycle trace of
    ``layer_name`` to ``path`` (CSV, one row a cycle, columns :data:`TRACE_COLUMNS`)."""
    import io

    from a3cs_common.io import atomic_write_text

    buffer = io.StringIO()
    report = simulate(workload, hw, engine=engine, trace_layer=layer_name, trace_file=buffer)
    atomic_write_text(path, buffer.getvalue())
    return report
