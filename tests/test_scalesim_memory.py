"""``memory_model: scalesim``: SCALE-Sim 3.0.0's USER-bandwidth memory system.

* SCALE-Sim's own figures (tests/data/scalesim_user_cycles.csv, written by ``python -m
  hw_sim.scalesim_reference --regression-data ...`` from real SCALE-Sim runs) reproduced
  exactly, layer by layer: total, stall and incl.-prefetch cycles and DRAM word counts.
* Hand counts: a GEMM small enough to follow every cycle in both memory models, and a read
  buffer whose refills, stalls (counted twice) and trip round the operand can be counted.
* The event-driven simulation against a literal, per-request port of SCALE-Sim's
  ``read_buffer`` / ``write_buffer`` / ``service_memory_requests`` on random small layers.
"""

from __future__ import annotations

import json
import math
import random
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from a3cs_common.errors import ConfigError
from a3cs_common.schema import validate
from hw_sim.hardware import Hardware
from hw_sim.scalesim_files import load_scalesim_cfg, load_topology_csv, write_scalesim_cfg
from hw_sim.scalesim_memory import (
    DemandStream,
    OperandDemand,
    geometry_of,
    layer_demand,
    memory_account,
    read_misses,
    read_stall,
    simulate_scalesim_layer,
)
from hw_sim.simulate import simulate
from hw_sim.workload import Conv2d, Linear, Workload
from tests.scalesim_data import read_user_cases

DATA = Path(__file__).parent / "data" / "scalesim_user_cycles.csv"
HEADERS = {
    "conv": "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
            "Num Filter, Strides,",
    "gemm": "Layer, M, N, K,",
}


def _hw(rows: int, cols: int, sram_kb: float, dataflow: str, bandwidth: int | None,
        memory_model: str = "scalesim") -> Hardware:
    return validate(Hardware, {
        "name": "case", "clock_mhz": 1000.0, "word_bits": 8,
        "pe_array": {"rows": rows, "cols": cols, "dataflow": dataflow},
        "sram_kb": {"ifmap": sram_kb, "filter": sram_kb, "ofmap": sram_kb},
        "dram": {"bandwidth_words_per_cycle": bandwidth}, "memory_model": memory_model,
    })


# ------------------------------------------------------------------------------------------
# SCALE-Sim's own numbers

CASES = read_user_cases(DATA)


def _ids(row: dict[str, str]) -> str:
    return (f"{row['topology']}-{row['layer']}-{row['array_rows']}x{row['array_cols']}-"
            f"{row['sram_kb']}kB-{row['dataflow']}-bw{row['bandwidth']}")


def _check_row(row: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "layer.csv"
    path.write_text(f"{HEADERS[row['form']]}\n{row['topology_row']}\n")
    (layer,) = load_topology_csv(path).layers
    hw = _hw(int(row["array_rows"]), int(row["array_cols"]), int(row["sram_kb"]),
             row["dataflow"], int(row["bandwidth"]))
    ours = simulate_scalesim_layer(layer, hw)
    got = (ours.total_cycles, ours.stall_cycles, ours.total_cycles_incl_prefetch,
           ours.ifmap_dram_reads, ours.filter_dram_reads, ours.ofmap_dram_writes)
    expected = tuple(int(row[k]) for k in ("total_cycles", "stall_cycles",
                                           "total_incl_prefetch", "ifmap_dram_reads",
                                           "filter_dram_reads", "ofmap_dram_writes"))
    assert got == expected


def test_regression_data_covers_the_dataflows_and_bandwidths():
    keys = {(r["dataflow"], int(r["bandwidth"])) for r in CASES}
    assert {(df, bw) for df in ("ws", "os", "is") for bw in (2, 4, 10)} <= keys
    assert {r["topology"] for r in CASES} >= {"minatar_reference", "mlp_policy", "gemm_folds",
                                              "resnet18"}
    # Stalls are exercised, not only stall-free layers.
    assert sum(int(r["stall_cycles"]) > 0 for r in CASES) >= 20


@pytest.mark.parametrize("row", CASES, ids=_ids)
def test_reproduces_scalesim(row, tmp_path):
    """Every layer case SCALE-Sim finished, ResNet-18's included (each well under a second)."""
    _check_row(row, tmp_path)


# ------------------------------------------------------------------------------------------
# Hand counts


def test_hand_count_tiny_gemm_both_models():
    """M=1, K=4, N=2 on a 2x2 weight-stationary array, 1 kB buffers, 2 words/cycle.

    SCALE-Sim (counted by hand, and equal to what SCALE-Sim 3.0.0 printed for this layer):
    * two row folds (K = 4 on 2 rows) of ``2 Sr + Sc + M - 2 = 5`` lines: 10 lines, compute
      cycles 9.  Everything fits the first prefetch, so no read ever misses: stall 0 and
      ``Total Cycles`` 9.
    * first prefetch, one port per operand: ifmap 4 words = 2 rows of B = 2 (cycles -2, -1),
      filter 8 words (incl. no padding: N = Sc) = 4 rows (cycles -4 .. -1): the first DRAM
      read is at cycle -4.
    * outputs: every fold writes its 2 partial sums (4 words); 4 < half of 1024, so nothing
      drains until the end; the final drain starts at the last line's cycle 9 and moves 2
      rows of 2 words, cycles 9 and 10.  ``Total Cycles (incl. prefetch)`` = 10 - (-4) = 14.
    Default model: step 1 loads the resident ifmap (4) and the first weight tile (4) over
    the one channel: prologue ceil(8 / 2) = 4; step 1 computes 2 (preload) + 1 + 2 = 5
    cycles while the second tile (4 words) arrives in 2; step 2 computes 5; the 2 final
    outputs drain in the epilogue, ceil(2 / 2) = 1.  Occupancy 4 + 5 + 5 + 1 = 15: total 14,
    of which 5 are stalls (prologue and epilogue).
    """
    layer = Linear(name="tiny", batch=1, in_features=4, out_features=2)
    hw = _hw(2, 2, 1, "ws", 2)
    ss = simulate_scalesim_layer(layer, hw)
    assert (ss.compute_cycles, ss.total_cycles, ss.stall_cycles) == (9, 9, 0)
    assert (ss.ifmap_dram_start_cycle, ss.filter_dram_start_cycle) == (-2, -4)
    assert (ss.ofmap_dram_stop_cycle, ss.total_cycles_incl_prefetch) == (10, 14)
    assert (ss.ifmap_dram_reads, ss.filter_dram_reads, ss.ofmap_dram_writes) == (4, 8, 4)
    account = memory_account(layer, hw, ss)
    assert (account.default_lead_cycles, account.default_stall_cycles,
            account.default_tail_cycles, account.default_total_cycles) == (4, 0, 1, 14)
    assert (account.scalesim_lead_cycles, account.scalesim_stall_cycles,
            account.scalesim_tail_cycles, account.scalesim_total_cycles) == (4, 0, 1, 14)
    default = simulate(Workload(name="t", layers=(layer,)),
                       _hw(2, 2, 1, "ws", 2, memory_model="default")).layers[0]
    assert (default.total_cycles, default.compute_cycles, default.stall_cycles) == (14, 9, 5)
    ours = simulate(Workload(name="t", layers=(layer,)), hw).layers[0]
    assert (ours.total_cycles, ours.compute_cycles, ours.stall_cycles) == (14, 9, 0)


def test_hand_count_tiny_gemm_os_lead_differs():
    """The same GEMM output-stationary: one fold of K + Sr + Sc - 2 = 6 lines (compute 5).

    SCALE-Sim prefetches both operands in parallel on their own ports, padding included: the
    ifmap's prefetch matrix is 4 x 2 (the second array row has no pixel: 4 pads), filter
    4 x 2: 8 words = 4 rows each, cycles -4 .. -1.  Its final drain (2 outputs, one row)
    starts at the last line, cycle 5: incl. prefetch = 5 - (-4) = 9, tail 0.
    Default: the first step needs ifmap 4 + filter 8 = 12 words over one channel:
    prologue 6; epilogue 1; total 6 + 6 + 1 - 1 = 12.  The 3 cycles of difference are all
    lead (2: a shared channel against three ports) and tail (1: SCALE-Sim drains during the
    last line)."""
    layer = Linear(name="tiny", batch=1, in_features=4, out_features=2)
    hw = _hw(2, 2, 1, "os", 2)
    ss = simulate_scalesim_layer(layer, hw)
    assert (ss.compute_cycles, ss.total_cycles, ss.stall_cycles) == (5, 5, 0)
    assert (ss.ifmap_dram_reads, ss.filter_dram_reads) == (8, 8)
    account = memory_account(layer, hw, ss)
    assert (account.default_lead_cycles, account.default_tail_cycles,
            account.default_total_cycles) == (6, 1, 12)
    assert (account.scalesim_lead_cycles, account.scalesim_tail_cycles,
            account.scalesim_total_cycles) == (4, 0, 9)


def test_hand_count_read_buffer_refills_and_doubled_stall():
    """A read buffer of 8 words (sets of ceil(8/100) = 1 word; window A = 4 sets, jump
    P = 4), fetch stream 0..15 (17 sets, the last empty), B = 1 word/cycle, one request per
    line in stream order.

    The first prefetch is 4 rows (cycles -4 .. -1, done at -1); every refill is issued when
    the previous completes and takes ceil(4 / 1) + 1 = 5 cycles: refill j is done at
    -1 + 5 j.  Lines 4, 8 and 12 miss (one jump each).  A line issued at c starts at
    t = c + 1: line 4, refill 1 done at 4 <= 5: t = 4, stall -1 (early, ignored); line 8:
    refill 2 at 9 <= 9: stall 0; line 12: refill 3 at 14 > 13: t = 2*14 - 13 = 15, stall 2,
    though the data was one cycle late: SCALE-Sim adds the stall twice."""
    fetch = np.arange(16)
    demand = DemandStream.of_requests(lines=np.arange(16), ranks=np.arange(16))
    misses = read_misses(OperandDemand.of_fetch(fetch, (demand,)), buffer_words=8, bandwidth=1)
    assert misses.lines.tolist() == [4, 8, 12]
    assert misses.jumps.tolist() == [1, 1, 1]
    assert (misses.initial_lines, misses.refill_cycles, misses.dram_reads) == (4, 5, 16)
    assert [read_stall(misses, i, c) for i, c in enumerate((4, 8, 12))] == [-1, 0, 2]

    # A word just behind the window: after the window moved to sets 4..7, re-reading word 0
    # takes three jumps (to 8, 12, then 16, 0, 1, 2 wrapping round), i.e. three refills.
    demand = DemandStream.of_requests(lines=np.array([0, 1, 2, 3, 4, 5]),
                                      ranks=np.array([0, 1, 2, 3, 4, 0]))
    back = read_misses(OperandDemand.of_fetch(fetch, (demand,)), buffer_words=8, bandwidth=1)
    assert back.lines.tolist() == [4, 5] and back.jumps.tolist() == [1, 3]
    assert back.first_jump.tolist() == [1, 2]


# ------------------------------------------------------------------------------------------
# The event-driven simulation against a literal port of SCALE-Sim's loops


def _literal_scalesim(layer, hw) -> tuple[int, int, int]:
    """SCALE-Sim's read_buffer / write_buffer / service_memory_requests, request by request
    (Python sets and all), on the same demand: (Total Cycles, Stall Cycles, incl. prefetch)."""
    g = geometry_of(layer)
    arr = hw.pe_array
    demand = layer_demand(g, arr.rows, arr.cols, arr.dataflow)
    bw = hw.dram.bandwidth_words_per_cycle

    class Read:
        def __init__(self, fetch, words):
            self.active = math.ceil(words * 0.5)
            self.prefetch = words - self.active
            per_set = math.ceil(words / 100)
            valid = [int(a) for a in fetch if a >= 0]
            self.sets = [set(valid[i:i + per_set]) for i in range(0, len(valid), per_set)]
            if len(valid) % per_set == 0:
                self.sets.append(set())
            n = len(self.sets)
            self.a = min(math.ceil(self.active / per_set), n)
            self.p = min(math.ceil(self.prefetch / per_set), n - self.a)
            self.start = 0
            rows = math.ceil(len(fetch) / bw)
            self.first = -min(math.ceil(self.active / bw), rows)
            self.last = -1

        def hit(self, addr):
            n = len(self.sets)
            return any(addr in self.sets[(self.start + i) % n] for i in range(self.a))

        def serve(self, addrs, cycle):
            offset = 1
            for addr in addrs:
                while not self.hit(addr):
                    self.start = (self.start + self.p) % len(self.sets)
                    self.last += math.ceil(self.prefetch / bw) + 1
                    stall = self.last - (cycle + offset)
                    offset += stall
                    if stall > 0:
                        offset += stall
            return offset - 1

    reads = [Read(demand.ifmap.fetch(), hw.sram_words("ifmap")),
             Read(demand.filter.fetch(), hw.sram_words("filter"))]
    per_line = [[[] for _ in range(demand.line_count)] for _ in range(2)]
    for k, operand in enumerate((demand.ifmap, demand.filter)):
        valid = operand.valid_addresses()
        for part in operand.parts:
            lines, ranks = part.flat()
            addresses = valid[ranks]
            for line, addr in zip(lines.tolist(), addresses.tolist(), strict=True):
                per_line[k][line].append(addr)

    words = hw.sram_words("ofmap")
    active = math.ceil(words * 0.5)
    drain_rows = math.ceil((words - active) / bw)
    rows: list[int] = []  # valid words per row handed to the drain queue
    fill = 0
    free = words
    next_row = 0
    drain_end = 0
    last_write = -10**9

    def flush():
        nonlocal fill
        if fill:
            rows.append(fill)
            fill = 0

    def drain(start):
        nonlocal next_row, free, last_write
        end = min(next_row + drain_rows, len(rows))
        count = end - next_row
        free += count * bw - (bw - rows[end - 1])
        next_row = end
        last_write = max(last_write, start + count - 1)
        return start + count - 1

    stall = 0
    out = 0
    for i in range(demand.line_count):
        cycle = i + stall
        read_stalls = [r.serve(per_line[k][i], cycle) for k, r in enumerate(reads)]
        current = cycle
        for _ in range(int(demand.ofmap_per_line[i])):
            free -= 1
            fill += 1
            if fill == bw:
                rows.append(bw)
                fill = 0
            if current < drain_end:
                if free <= 0:
                    current = drain_end
            elif free < active:
                flush()
                drain_end = drain(current)
        out = current
        stall += max(*read_stalls, current - cycle)
    flush()
    cycle = out
    while next_row < len(rows):
        cycle = drain(cycle) + 1
    return out, stall, last_write - min(r.first for r in reads)


def _random_case(rng: random.Random):
    dataflow = rng.choice(("ws", "os", "is"))
    rows, cols = rng.choice((2, 3, 4, 8)), rng.choice((2, 3, 4, 8))
    hw = _hw(rows, cols, rng.choice((1, 2)), dataflow, rng.choice((1, 2, 3, 5, 8)))
    if rng.random() < 0.5:
        layer = Linear(name="l", batch=rng.randint(1, 12), in_features=rng.randint(1, 300),
                       out_features=rng.randint(1, 40))
    else:
        k = rng.randint(1, 3)
        size = rng.randint(k, 9)
        layer = Conv2d(name="c", in_channels=rng.randint(1, 8), out_channels=rng.randint(1, 20),
                       in_height=size, in_width=size, kernel_size=k, stride=rng.randint(1, 2),
                       ceil_mode=rng.random() < 0.5)
    return layer, hw


@pytest.mark.parametrize("seed", range(40))
def test_event_driven_equals_literal_port(seed):
    layer, hw = _random_case(random.Random(seed))
    ours = simulate_scalesim_layer(layer, hw)
    assert (ours.total_cycles, ours.stall_cycles,
            ours.total_cycles_incl_prefetch) == _literal_scalesim(layer, hw)


@pytest.mark.parametrize("seed", range(60))
def test_closed_form_demand_equals_the_listing(seed):
    """The segments written in closed form request exactly what the operand matrices list,
    request by request (lines and own-copy ranks), and the prefetch streams agree."""
    layer, hw = _random_case(random.Random(1000 + seed))
    g, arr = geometry_of(layer), hw.pe_array
    closed = layer_demand(g, arr.rows, arr.cols, arr.dataflow)
    listed = layer_demand(g, arr.rows, arr.cols, arr.dataflow, listed=True)
    assert closed.line_count == listed.line_count
    for ours, theirs in ((closed.ifmap, listed.ifmap), (closed.filter, listed.filter)):
        assert (ours.fetch_words, ours.valid_words) == (theirs.fetch_words, theirs.valid_words)
        assert ours.fetch_words == ours.fetch().size
        assert len(ours.parts) == len(theirs.parts)
        for a, b in zip(ours.parts, theirs.parts, strict=True):
            for x, y in zip(a.flat(), b.flat(), strict=True):
                np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("dataflow", ["ws", "os", "is"])
def test_ceil_mode_closed_form_takes_out_the_invalid_entries(dataflow):
    """Windows that leave the input (ceil mode) make invalid im2col entries: the closed form
    counts them as valid and takes them out, which must equal the listing."""
    layer = Conv2d(name="c", in_channels=3, out_channels=5, in_height=10, in_width=11,
                   kernel_size=3, stride=2, ceil_mode=True)
    g = geometry_of(layer)
    assert not g.windows_inside
    closed = layer_demand(g, 4, 3, dataflow)
    listed = layer_demand(g, 4, 3, dataflow, listed=True)
    assert closed.ifmap.valid_words == listed.ifmap.valid_words < g.m * g.k
    for a, b in zip(closed.ifmap.parts, listed.ifmap.parts, strict=True):
        for x, y in zip(a.flat(), b.flat(), strict=True):
            np.testing.assert_array_equal(x, y)


# ------------------------------------------------------------------------------------------
# Reports, configuration and the CLI


def test_report_uses_scalesim_accounting():
    layer = Linear(name="fc", batch=1, in_features=1024, out_features=128)
    hw = _hw(8, 8, 16, "ws", 10)
    ss = simulate_scalesim_layer(layer, hw)
    report = simulate(Workload(name="w", layers=(layer,)), hw)
    (row,) = report.layers
    assert row.total_cycles == ss.total_cycles_incl_prefetch
    assert row.stall_cycles == ss.stall_cycles > 0
    assert row.compute_cycles + row.stall_cycles == ss.total_cycles
    assert (row.ifmap_dram_reads, row.filter_dram_reads, row.ofmap_dram_writes) == (
        ss.ifmap_dram_reads, ss.filter_dram_reads, ss.ofmap_dram_writes)
    assert "SCALE-Sim memory model" in report.source and "Total Cycles" in report.to_table()
    default = simulate(Workload(name="w", layers=(layer,)),
                       _hw(8, 8, 16, "ws", 10, memory_model="default"))
    assert default.layers[0].compute_cycles == row.compute_cycles
    assert default.total_cycles != report.total_cycles


def test_unlimited_bandwidth_is_the_same_in_both_models():
    layer = Conv2d(name="c", in_channels=4, out_channels=16, in_height=10, in_width=10,
                   kernel_size=3)
    wl = Workload(name="w", layers=(layer,))
    a = simulate(wl, _hw(8, 8, 16, "os", None)).layers[0]
    b = simulate(wl, _hw(8, 8, 16, "os", None, memory_model="default")).layers[0]
    assert a == b


@pytest.mark.parametrize(("change", "field"), [
    ({"sram_kb": {"ifmap": 1.5, "filter": 1, "ofmap": 1}}, "sram_kb.ifmap"),
    ({"keep_weights_on_chip": True}, "keep_weights_on_chip"),
    ({"n_m": True}, "n_m"),
    ({"memory_model": "ramulator"}, "memory_model"),
])
def test_hardware_scalesim_cannot_represent_is_refused(change, field):
    data = {**_hw(4, 4, 1, "ws", 4).model_dump(), **change}
    with pytest.raises(ConfigError) as info:
        validate(Hardware, data)
    assert info.value.field == field and "\n" not in str(info.value)


def test_layers_scalesim_cannot_run_are_refused():
    hw = _hw(4, 4, 1, "ws", 4)
    grouped = Conv2d(name="dw", in_channels=4, out_channels=4, in_height=6, in_width=6,
                     kernel_size=3, groups=4)
    with pytest.raises(ConfigError, match="groups"):
        simulate(Workload(name="w", layers=(grouped,)), hw)
    with pytest.raises(ConfigError, match="engine"):
        simulate(Workload(name="w", layers=(Linear(name="l", in_features=4, out_features=4),)),
                 hw, engine="stepper")


def _cfg(tmp_path: Path, **layout: str) -> Path:
    path = write_scalesim_cfg(_hw(4, 4, 1, "ws", 4, memory_model="default"),
                              tmp_path / "hw.cfg")
    text = path.read_text()
    for key, value in layout.items():
        text, count = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
        assert count == 1, key
    path.write_text(text)
    return path


def test_cfg_keys_scalesim_mode_cannot_reproduce_are_refused(tmp_path):
    assert load_scalesim_cfg(_cfg(tmp_path), memory_model="scalesim").memory_model == "scalesim"
    # The default model ignores SCALE-Sim's per-port keys; the scalesim model cannot.
    load_scalesim_cfg(_cfg(tmp_path, IfmapSRAMBankBandwidth="8"))
    for key, value in (("IfmapSRAMBankBandwidth", "8"), ("FilterSRAMBankNum", "3"),
                       ("IfmapCustomLayout", "True"), ("UseRamulatorTrace", "True")):
        with pytest.raises(ConfigError, match=key):
            load_scalesim_cfg(_cfg(tmp_path, **{key: value}), memory_model="scalesim")


def test_cli_memory_model(tmp_path, capsys):
    from a3cs.cli import main

    def a3cs(*args: str) -> tuple[int, str, str]:
        code = main(["simulate", *args])
        out, err = capsys.readouterr()
        return code, out, err

    topology = tmp_path / "net.csv"
    topology.write_text("Layer, M, N, K,\nfc, 1, 128, 1024,\nhead, 1, 6, 128,\n")
    cfg = _cfg(tmp_path)
    code, out, err = a3cs("--hw", str(cfg), "--workload", str(topology), "--memory-model",
                          "scalesim", "--format", "json")
    assert code == 0, err
    assert "memory model: scalesim" in err
    report = json.loads(out)
    hw = load_scalesim_cfg(cfg, memory_model="scalesim")
    expected = [simulate_scalesim_layer(layer, hw)
                for layer in load_topology_csv(topology).layers]
    assert [row["total_cycles"] for row in report["layers"]] == [
        e.total_cycles_incl_prefetch for e in expected]
    assert [row["stall_cycles"] for row in report["layers"]] == [
        e.stall_cycles for e in expected]
    code, out, err = a3cs("--hw", str(cfg), "--workload", str(topology))
    assert code == 0 and "memory model: default" in err
    for bad in (("--memory-model", "ramulator"),
                ("--memory-model", "scalesim", "--engine", "stepper")):
        code, out, err = a3cs("--hw", str(cfg), "--workload", str(topology), *bad)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
    wide = _cfg(tmp_path, FilterSRAMBankBandwidth="8")
    code, out, err = a3cs("--hw", str(wide), "--workload", str(topology), "--memory-model",
                          "scalesim")
    assert code == 2 and "FilterSRAMBankBandwidth" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("venv", ["missing", "without_scalesim"])
def test_reference_refuses_a_venv_without_scalesim_in_one_line(tmp_path, capsys, venv):
    """``python -m hw_sim.scalesim_reference`` names the venv and how to make one; this
    test's own interpreter stands in for a venv that lacks SCALE-Sim."""
    from hw_sim.scalesim_reference import main

    path = tmp_path / "venv"
    if venv == "without_scalesim":
        (path / "bin").mkdir(parents=True)
        (path / "bin" / "python").symlink_to(sys.executable)
    assert main(["--venv", str(path), "--topologies", "mlp_policy"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(path) in err and "scalesim==3.0.0" in err


def test_reference_runs_each_layer_shape_once(tmp_path):
    """SCALE-Sim's figures depend on a layer's shape, not its name: a layer shaped like one
    already run (ResNet-18's repeated blocks, hours each in SCALE-Sim) takes its result."""
    from hw_sim.scalesim_reference import Case, cache_key, run_case

    header = "Layer name,IFMAP Height,IFMAP Width,Filter Height,Filter Width,Channels,Num Filter,Strides,"
    rows = ["Conv_a,7,7,3,3,8,8,1,", "Conv_b,7,7,3,3,8,8,1,", "Conv_c,9,9,3,3,8,8,1,",
            "Conv_d,7,7,3,3,8,8,1,"]
    topology = tmp_path / "net.csv"
    topology.write_text("\n".join([header, *rows]) + "\n")
    case = Case(8, 8, 16, "ws", 4)
    versions = {"scalesim": "3.0.0", "numpy": "2.3.5"}
    cfg_text = write_scalesim_cfg(case.hardware(), tmp_path / "case.cfg").read_text()
    cache = tmp_path / "cache"
    cache.mkdir()
    record = {"status": "ok", "wall_s": 1.0, "timeout_s": 300.0, "layers": [{
        "Total Cycles": 1234.0, "Stall Cycles": 34.0, "Total Cycles (incl. prefetch)": 1300.0,
        "DRAM IFMAP Reads": 392.0, "DRAM Filter Reads": 576.0, "DRAM OFMAP Writes": 200.0}]}
    key = cache_key(versions, cfg_text, f"{header}\n{rows[3]}\n")
    (cache / f"{key}.json").write_text(json.dumps(record))
    # Conv_a's own record is an earlier timeout at a longer limit: its twin's finished run
    # (Conv_d, later in the file) replaces it.
    timeout = {"status": "timeout", "wall_s": 600.0, "timeout_s": 600.0, "layers": []}
    key = cache_key(versions, cfg_text, f"{header}\n{rows[0]}\n")
    (cache / f"{key}.json").write_text(json.dumps(timeout))
    results = run_case("net", topology, case, python=None, versions=versions, cache=cache,
                       seeds=[], work=tmp_path / "work", timeout_s=300.0, run=False)
    assert [r.status for r in results] == ["ok", "ok", "not run", "ok"]
    assert results[0].scalesim_total_cycles == results[1].scalesim_total_cycles == 1234
    assert results[1].scalesim_stall_cycles == 34 and results[2].scalesim_total_cycles is None


class _ReadBufferLike:
    """SCALE-Sim's read_buffer, as far as its trace goes: the constructor's placeholder, the
    first prefetch replacing it, each later prefetch concatenating its rows to it, and the
    report's min and max of the cycle column."""

    def __init__(self):
        self.trace_matrix = np.ones((1, 1))

    def prefetch_active_buffer(self, rows):
        self.trace_matrix = np.column_stack((rows[:, :1], rows[:, 1:]))

    def new_prefetch(self):  # SCALE-Sim's takes no argument: its rows come from the buffer
        self.trace_matrix = np.concatenate((self.trace_matrix, self.next_rows), axis=0)

    def get_external_access_start_stop_cycles(self):
        return np.amin(self.trace_matrix[:, 0]), np.amax(self.trace_matrix[:, 0])


def test_read_buffer_keeping_its_trace_extremes_reports_the_full_traces_cycles():
    """``--read-buffer-trace extremes`` keeps two rows instead of the whole trace, and gives
    the start and stop cycles the whole trace gives (what SCALE-Sim's reports read of it)."""
    from hw_sim.scalesim_child import keep_read_buffer_trace_extremes

    class Extremes(_ReadBufferLike):
        pass

    keep_read_buffer_trace_extremes(Extremes)
    rng = np.random.default_rng(0)
    shipped, extremes = _ReadBufferLike(), Extremes()
    first = np.column_stack((rng.integers(-50, 50, 7).astype(float), rng.integers(0, 99, (7, 4))))
    for buffer in (shipped, extremes):
        buffer.prefetch_active_buffer(first)
    for _ in range(40):
        rows = np.column_stack((rng.integers(-900, 900, 5).astype(float),
                                rng.integers(0, 99, (5, 4))))
        for buffer in (shipped, extremes):
            buffer.next_rows = rows
            buffer.new_prefetch()
            assert (buffer.get_external_access_start_stop_cycles()
                    == shipped.get_external_access_start_stop_cycles())
    assert shipped.trace_matrix.shape == (207, 5) and extremes.trace_matrix.shape == (2, 5)
    assert extremes.trace_matrix.dtype == shipped.trace_matrix.dtype


def test_scalesim_child_refuses_an_unknown_read_buffer_trace():
    from hw_sim.scalesim_child import main

    with pytest.raises(SystemExit, match="allowed: \\('full', 'extremes'\\)"):
        main(["c.cfg", "t.csv", "l.csv", "out", "conv", "half"])


@pytest.mark.parametrize("args", [["--read-buffer-trace", "half"], ["--arrays", "3"],
                                  ["--bandwidths", "x"]])
def test_reference_bad_arguments_are_one_line_errors(capsys, args):
    from hw_sim.scalesim_reference import main

    with pytest.raises(SystemExit) as stop:
        main(args)
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and len(err.splitlines()) == 1 and args[0] in err
