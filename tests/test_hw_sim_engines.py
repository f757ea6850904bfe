"""hw_sim engines: the event engine equals the per-cycle stepper; dense timing equals
SCALE-Sim v3's closed forms; each engine's pieces against brute force."""

from __future__ import annotations

import io
import math
from dataclasses import asdict

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from a3cs_common.errors import ConfigError
from hw_sim.engines.block_circulant import STAGES, pipeline_cycles
from hw_sim.engines.systolic import pairs_sum_at_most
from hw_sim.files import load_workload
from hw_sim.hardware import Hardware
from hw_sim.schedule import StepRun, memory_timeline
from hw_sim.simulate import simulate, simulate_layer
from hw_sim.workload import Conv2d, Linear
from tests.hw_strategies import hardware, layer

EXACT_FIELDS = (
    "total_cycles", "compute_cycles", "stall_cycles", "macs", "complex_macs", "fft_butterflies",
    "index_decodes", "ifmap_sram_reads", "filter_sram_reads", "ofmap_sram_reads",
    "ofmap_sram_writes", "ifmap_dram_reads", "filter_dram_reads", "psum_dram_reads",
    "ofmap_dram_writes",
)

PROPERTY = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _both_engines(lay, hw, weights_on_chip=False):
    try:
        event = simulate_layer(lay, hw, engine="event", weights_on_chip=weights_on_chip)
    except ConfigError:
        assume(False)  # an SRAM too small for this layer: rejected, not simulated
    stepper = simulate_layer(lay, hw, engine="stepper", weights_on_chip=weights_on_chip)
    return asdict(event), asdict(stepper)


@pytest.mark.parametrize("dataflow", ["ws", "os", "is"])
@PROPERTY
@given(data=st.data())
def test_event_equals_stepper_dense(dataflow, data):
    hw = data.draw(hardware(dataflow))
    lay = data.draw(layer("dense"))
    event, stepper = _both_engines(lay, hw, weights_on_chip=data.draw(st.booleans()))
    assert {k: event[k] for k in EXACT_FIELDS} == {k: stepper[k] for k in EXACT_FIELDS}
    assert event["dram_energy_pj"] == pytest.approx(stepper["dram_energy_pj"])


@pytest.mark.parametrize("fmt", ["block_circulant", "one_by_n", "n_m"])
@PROPERTY
@given(data=st.data())
def test_event_equals_stepper_compressed(fmt, data):
    hw = data.draw(hardware())
    lay = data.draw(layer(fmt))
    event, stepper = _both_engines(lay, hw, weights_on_chip=data.draw(st.booleans()))
    assert {k: event[k] for k in EXACT_FIELDS} == {k: stepper[k] for k in EXACT_FIELDS}
    assert event["compute_energy_pj"] == pytest.approx(stepper["compute_energy_pj"])


def scalesim_compute_cycles(dataflow: str, rows: int, cols: int, m: int, n: int, k: int) -> int:
    """SCALE-Sim v3's stall-free compute cycles (closed forms in shared/notes/FACTS.md)."""
    if dataflow == "ws":
        return (2 * rows + cols + m - 2) * math.ceil(k / rows) * math.ceil(n / cols) - 1
    if dataflow == "os":
        return (rows + cols + k - 2) * math.ceil(m / rows) * math.ceil(n / cols) - 1
    return (2 * rows + cols + n - 2) * math.ceil(k / rows) * math.ceil(m / cols) - 1


def _systolic(dataflow: str, rows: int = 32, cols: int = 32, kb: float = 64,
              bandwidth: int | None = None) -> Hardware:
    return Hardware.model_validate({
        "name": f"{dataflow}_{rows}x{cols}", "clock_mhz": 200,
        "pe_array": {"rows": rows, "cols": cols, "dataflow": dataflow},
        "sram_kb": {"ifmap": kb, "filter": kb, "ofmap": kb},
        "dram": {"bandwidth_words_per_cycle": bandwidth},
    })


@pytest.mark.parametrize("dataflow", ["ws", "os", "is"])
@pytest.mark.parametrize("bandwidth", [None, 10])
def test_resnet18_compute_cycles_equal_scalesim_closed_form(repo, dataflow, bandwidth):
    workload = load_workload(str(repo / "experiments/workloads/resnet18.csv"))
    assert len(workload.layers) == 21
    report = simulate(workload, _systolic(dataflow, bandwidth=bandwidth))
    for lay, rep in zip(workload.layers, report.layers, strict=True):
        assert rep.compute_cycles == scalesim_compute_cycles(
            dataflow, 32, 32, lay.gemm_m, lay.gemm_n, lay.gemm_k), lay.name
    if bandwidth is None:
        assert report.stall_cycles == 0
    else:
        assert report.stall_cycles > 0


@settings(max_examples=80, deadline=None)
@given(dataflow=st.sampled_from(["ws", "os", "is"]), rows=st.integers(1, 40),
       cols=st.integers(1, 40), m=st.integers(1, 300), n=st.integers(1, 300),
       k=st.integers(1, 300))
def test_gemm_compute_cycles_equal_scalesim_closed_form(dataflow, rows, cols, m, n, k):
    gemm = Linear(name="g", in_features=k, out_features=n, batch=m)
    rep = simulate_layer(gemm, _systolic(dataflow, rows, cols, kb=1024))
    assert rep.compute_cycles == scalesim_compute_cycles(dataflow, rows, cols, m, n, k)
    assert rep.macs == m * n * k


@settings(max_examples=80, deadline=None)
@given(dataflow=st.sampled_from(["ws", "os", "is"]), rows=st.integers(1, 40),
       cols=st.integers(1, 40), m=st.integers(1, 300), n=st.integers(1, 300),
       k=st.integers(1, 300), group=st.sampled_from([2, 3, 4, 8]), data=st.data())
def test_n_m_compute_cycles_equal_scalesim_with_the_compressed_reduction(
        dataflow, rows, cols, m, n, k, group, data):
    kept = data.draw(st.integers(1, group - 1))
    compressed = (k // group) * kept + min(kept, k % group)  # FINDINGS of SCALE-Sim 3.0.0
    gemm = Linear(name="g", in_features=k, out_features=n, batch=m,
                  weight_format={"type": "n_m", "n": kept, "m": group})
    hw = _systolic(dataflow, rows, cols, kb=1024).model_copy(update={"n_m": True})
    rep = simulate_layer(gemm, hw)
    assert rep.compute_cycles == scalesim_compute_cycles(dataflow, rows, cols, m, n, compressed)
    assert rep.macs == m * n * compressed
    with pytest.raises(ConfigError, match="n_m: got False; allowed: true in hardware"):
        simulate_layer(gemm, _systolic(dataflow, rows, cols, kb=1024))


@given(rows=st.integers(1, 9), cols=st.integers(1, 9), s=st.integers(-3, 20))
def test_pairs_sum_at_most_brute_force(rows, cols, s):
    brute = sum(1 for r in range(rows) for c in range(cols) if r + c <= s)
    assert pairs_sum_at_most(rows, cols, s) == brute


def _recurrence(vectors, occupancy, latency, depth):
    starts = []
    for j in range(vectors):
        row = []
        for k in range(STAGES):
            t = starts[j - 1][k] + occupancy[k] if j else 0
            if k:
                t = max(t, row[k - 1] + latency[k - 1])
            if k < STAGES - 1 and j >= depth:
                t = max(t, starts[j - depth][k + 1] + occupancy[k + 1])
            row.append(t)
        starts.append(row)
    return starts[-1][-1] + latency[-1]


@settings(max_examples=200, deadline=None)
@given(vectors=st.integers(1, 400), occupancy=st.tuples(*[st.integers(1, 9)] * 3),
       extra=st.tuples(st.integers(0, 12), st.just(0), st.integers(0, 12)),
       depth=st.integers(1, 4))
def test_pipeline_closed_form_equals_full_recurrence(vectors, occupancy, extra, depth):
    latency = tuple(o + e for o, e in zip(occupancy, extra, strict=True))
    assert pipeline_cycles(vectors, occupancy, latency, depth) == _recurrence(
        vectors, occupancy, latency, depth)


def test_pipeline_backpressure_starves_a_deep_upstream_stage():
    # A long FFT latency with one buffer slot cannot keep a fast MAC stage busy.
    shallow = pipeline_cycles(100, (1, 2, 1), (20, 2, 5), buffer_depth=1)
    deep = pipeline_cycles(100, (1, 2, 1), (20, 2, 5), buffer_depth=16)
    assert shallow > deep
    assert deep == 20 + 2 + 5 + 99 * 2  # bottleneck-paced once the buffers suffice


def test_memory_model_formula():
    runs = [StepRun(work="a", ifmap_load_words=10, store_words=4),
            StepRun(work="b", filter_load_words=6, store_words=2, repeat=3)]
    timeline = memory_timeline(runs, [5, 1], bandwidth=2)
    # prologue ceil(10/2)=5; step a: max(5, ceil((6+0)/2)=3)=5; b1: max(1, ceil((6+4)/2))=5;
    # b2: max(1, ceil((6+2)/2))=4; b3: max(1, ceil((0+2)/2))=1; epilogue ceil(2/2)=1.
    assert timeline.occupancy_cycles == 5 + 5 + 5 + 4 + 1 + 1
    assert timeline.compute_occupancy_cycles == 5 + 3
    assert timeline.stall_cycles == 21 - 8
    unlimited = memory_timeline(runs, [5, 1], bandwidth=None)
    assert unlimited.stall_cycles == 0 and unlimited.total_cycles == 7


def test_one_by_n_load_imbalance_costs_cycles():
    hw = Hardware.model_validate({
        "name": "v", "clock_mhz": 100, "pe_array": {"rows": 4, "cols": 4, "dataflow": "ws"},
        "sram_kb": {"ifmap": 64, "filter": 64, "ofmap": 64},
        "one_by_n": {"vector_lanes": 2, "lane_width": 4},
    })
    balanced = [[1, 1, 0, 0], [0, 0, 1, 1]]
    skewed = [[1, 1, 1, 1], [0, 0, 0, 0]]

    def cycles(mask):
        lay = Linear(name="l", in_features=4, out_features=8,
                     weight_format={"type": "one_by_n", "n": 4, "mask": mask})
        return simulate_layer(lay, hw).compute_cycles

    assert cycles(skewed) > cycles(balanced)
    assert cycles(skewed) == 4 * (1 + 1)  # four blocks of (decode 1 + 1 pixel x 1 cycle)


def test_block_size_must_fit_fft_units():
    hw = Hardware.model_validate({
        "name": "b", "clock_mhz": 100, "pe_array": {"rows": 4, "cols": 4, "dataflow": "ws"},
        "sram_kb": {"ifmap": 64, "filter": 64, "ofmap": 64},
        "block_circulant": {"fft_points": 4, "fft_units": 1, "ifft_units": 1,
                            "fft_pipeline_depth": 2, "complex_mac_lanes": 4},
    })
    lay = Linear(name="l", in_features=16, out_features=16,
                 weight_format={"type": "block_circulant", "block_size": 8})
    with pytest.raises(ConfigError, match=r"block_circulant\.fft_points"):
        simulate_layer(lay, hw)


def test_trace_matches_report(repo):
    workload = load_workload(str(repo / "experiments/workloads/minatar_reference.yaml"))
    hw = _systolic("ws", 8, 8, kb=4, bandwidth=4)
    buffer = io.StringIO()
    report = simulate(workload, hw, trace_layer="conv", trace_file=buffer)
    lines = buffer.getvalue().strip().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","), strict=True)) for line in lines[1:]]
    conv = report.layers[0]
    assert len(rows) == conv.total_cycles + 1
    assert sum(int(r["macs"]) for r in rows) == conv.macs == 4 * 16 * 9 * 64
    assert sum(int(r["dram_read_words"]) for r in rows) == (
        conv.ifmap_dram_reads + conv.filter_dram_reads + conv.psum_dram_reads)
    assert {r["phase"] for r in rows} >= {"compute", "prologue"}
    assert report.layers[1:] == simulate(workload, hw).layers[1:]


def test_weights_on_chip_removes_weight_traffic(repo):
    workload = load_workload(str(repo / "experiments/workloads/minatar_reference.yaml"))
    base = _systolic("ws", 16, 16, kb=512, bandwidth=8)
    kept = base.model_copy(update={"keep_weights_on_chip": True})
    normal, on_chip = simulate(workload, base), simulate(workload, kept)
    assert on_chip.weights_on_chip and not normal.weights_on_chip
    assert on_chip.total("filter_dram_reads") == 0 < normal.total("filter_dram_reads")
    assert on_chip.total_cycles < normal.total_cycles
    small = _systolic("ws", 16, 16, kb=16, bandwidth=8).model_copy(
        update={"keep_weights_on_chip": True})
    assert not simulate(workload, small).weights_on_chip  # 132 k weights do not fit 16 KiB


def test_simulation_is_deterministic(repo):
    workload = load_workload(str(repo / "experiments/workloads/minatar_one_by_4.yaml"))
    hw = Hardware.model_validate({
        "name": "v", "clock_mhz": 100, "pe_array": {"rows": 8, "cols": 8, "dataflow": "os"},
        "sram_kb": {"ifmap": 64, "filter": 256, "ofmap": 64},
        "dram": {"bandwidth_words_per_cycle": 4},
        "one_by_n": {"vector_lanes": 8, "lane_width": 4},
    })
    assert simulate(workload, hw) == simulate(workload, hw)


def test_grouped_conv_is_groups_independent_gemms():
    hw = _systolic("ws", 4, 4, kb=64)
    depthwise = Conv2d(name="dw", in_channels=8, out_channels=8, in_height=6, in_width=6,
                       kernel_size=3, groups=8)
    single = Conv2d(name="one", in_channels=1, out_channels=1, in_height=6, in_width=6,
                    kernel_size=3)
    # same occupancy per group, fencepost (-1) counted once per layer
    assert simulate_layer(depthwise, hw).compute_cycles + 1 == 8 * (
        simulate_layer(single, hw).compute_cycles + 1)


def test_workload_totals_are_sums_of_layers(repo):
    workload = load_workload(str(repo / "experiments/workloads/minatar_reference.yaml"))
    report = simulate(workload, _systolic("os", 16, 16, bandwidth=16))
    assert report.total_cycles == sum(lay.total_cycles for lay in report.layers)
    assert report.fps == pytest.approx(200e6 / report.total_cycles)
    assert report.energy_pj == pytest.approx(sum(lay.energy_pj for lay in report.layers))
