"""The batched analytical model against hw_sim: memory-timeline algebra, engines, reports,
resources."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from a3cs_common.errors import ConfigError
from accelerator_model.encode import HardwareBatch, LayerBatch
from accelerator_model.fidelity import compare, refused_agreement, sample_pairs
from accelerator_model.model import estimate, evaluate, evaluate_grid
from accelerator_model.resources import budget_fit, hardware_resources, resources
from accelerator_model.timeline import Algebra
from hw_sim.files import load_hardware, load_workload
from hw_sim.hardware import Hardware
from hw_sim.schedule import StepRun, memory_timeline
from hw_sim.simulate import simulate
from hw_sim.workload import Linear, make_workload

HW = "experiments/hw"
NETS = "experiments/workloads"


def _random_sequence(rng: random.Random, depth: int) -> tuple[list, tuple]:
    kind = rng.choice(["steps", "concat", "repeat"]) if depth else "steps"
    if kind == "steps":
        c, ld, st, k = rng.randint(0, 30), rng.randint(0, 60), rng.randint(0, 60), \
            rng.randint(0, 4)
        return [(c, ld, st)] * k, ("steps", c, ld, st, k)
    a = _random_sequence(rng, depth - 1)
    if kind == "concat":
        b = _random_sequence(rng, depth - 1)
        return a[0] + b[0], ("concat", a[1], b[1])
    k = rng.randint(0, 3) if a[0] else 0
    return a[0] * k, ("repeat", a[1], k)


def _build(alg: Algebra, tree: tuple):
    def t(x: float) -> torch.Tensor:
        return torch.tensor([float(x)], dtype=torch.float64)

    if tree[0] == "steps":
        return alg.steps(t(tree[1]), t(tree[2]), t(tree[3]), t(tree[4]))
    if tree[0] == "concat":
        return alg.concat(_build(alg, tree[1]), _build(alg, tree[2]))
    return alg.repeat(_build(alg, tree[1]), t(tree[2]))


def test_pattern_algebra_equals_hw_sim_memory_timeline():
    rng = random.Random(7)
    checked = 0
    while checked < 400:
        seq, tree = _random_sequence(rng, 4)
        if not seq:
            continue
        bandwidth = rng.choice([None, 1, 3, 8])
        alg = Algebra(torch.tensor([float("inf") if bandwidth is None else bandwidth],
                                   dtype=torch.float64))
        pattern = _build(alg, tree)
        runs = [StepRun(None, ld, 0, 0, st, 1) for _, ld, st in seq]
        expected = memory_timeline(runs, [c for c, _, _ in seq], bandwidth)
        assert alg.occupancy(pattern).item() == expected.occupancy_cycles
        assert pattern.n.item() == len(seq)
        checked += 1


@pytest.mark.parametrize(("hw", "net"), [
    ("zc706_fpga.yaml", "minatar_reference.yaml"),
    ("ws_32x32.yaml", "minatar_reference.yaml"),
    ("ws_32x32.yaml", "mlp_policy.yaml"),
    ("ws_32x32.yaml", "resnet18.csv"),
])
def test_dense_workloads_match_hw_sim_exactly(repo, hw, net):
    hardware = load_hardware(str(repo / HW / hw))
    workload = load_workload(str(repo / NETS / net))
    sim = simulate(workload, hardware)
    est = estimate(workload, hardware)
    assert est.source == "accelerator_model" and sim.weights_on_chip == est.weights_on_chip
    for a, b in zip(sim.layers, est.layers, strict=True):
        for field in ("total_cycles", "compute_cycles", "stall_cycles", "macs",
                      "ifmap_sram_reads", "filter_sram_reads", "ofmap_sram_reads",
                      "ofmap_sram_writes", "ifmap_dram_reads", "filter_dram_reads",
                      "psum_dram_reads", "ofmap_dram_writes"):
            assert getattr(a, field) == getattr(b, field), (a.name, field)
        assert b.energy_pj == pytest.approx(a.energy_pj, rel=1e-9)
        assert b.utilization == pytest.approx(a.utilization, rel=1e-9)
    assert est.fps == pytest.approx(sim.fps)


@pytest.mark.parametrize(("hw", "net"), [
    ("block_circulant_engine.yaml", "minatar_block_circulant.yaml"),
    ("one_by_n_engine.yaml", "minatar_one_by_4.yaml"),
])
def test_compressed_workloads_close_to_hw_sim(repo, hw, net):
    hardware = load_hardware(str(repo / HW / hw))
    workload = load_workload(str(repo / NETS / net))
    sim = simulate(workload, hardware)
    est = estimate(workload, hardware)
    assert est.total_cycles == pytest.approx(sim.total_cycles, rel=0.01)
    assert est.energy_pj == pytest.approx(sim.energy_pj, rel=1e-6)
    for a, b in zip(sim.layers, est.layers, strict=True):
        assert a.compute_cycles == b.compute_cycles  # exact for these layers
        assert (a.macs, a.complex_macs, a.fft_butterflies, a.index_decodes) == \
            (b.macs, b.complex_macs, b.fft_butterflies, b.index_decodes)


def test_random_pairs_against_hw_sim():
    runnable, refused = sample_pairs(90, seed=3)
    c = compare(runnable)
    assert c.model_valid.all()
    dense = c.formats == "dense"
    np.testing.assert_array_equal(c.model_cycles[dense], c.sim_cycles[dense])
    np.testing.assert_allclose(c.model_energy_pj[dense], c.sim_energy_pj[dense], rtol=1e-9)
    circulant = c.formats == "block_circulant"
    np.testing.assert_allclose(c.model_energy_pj[circulant], c.sim_energy_pj[circulant],
                               rtol=1e-9)  # counts and traffic are exact
    error = np.abs(c.model_cycles - c.sim_cycles) / c.sim_cycles
    assert error.mean() < 0.01 and error.max() < 0.2
    assert refused_agreement(refused) == 1.0


def test_float32_ranks_like_float64():
    runnable, _ = sample_pairs(45, seed=5)
    layers = LayerBatch.from_layers([p.layer for p in runnable],
                                    lanes={p.hw.one_by_n.vector_lanes for p in runnable})
    hws = HardwareBatch.from_hardware([p.hw for p in runnable])
    index = torch.arange(len(runnable))
    exact = evaluate(layers, hws, index, index, dtype=torch.float64)
    fast = evaluate(layers, hws, index, index, dtype=torch.float32)
    assert fast.total_cycles.dtype == torch.float32
    np.testing.assert_allclose(fast.total_cycles.double().numpy(),
                               exact.total_cycles.numpy(), rtol=2e-6)


def test_pair_order_does_not_matter(repo):
    hw = [load_hardware(str(repo / HW / name)) for name in
          ("zc706_fpga.yaml", "ws_32x32.yaml", "block_circulant_engine.yaml",
           "one_by_n_engine.yaml")]
    layers = [layer for net in ("minatar_reference.yaml", "minatar_block_circulant.yaml")
              for layer in load_workload(str(repo / NETS / net)).layers]
    lb, hb = LayerBatch.from_layers(layers), HardwareBatch.from_hardware(hw)
    grid = evaluate_grid(lb, hb)
    perm = torch.randperm(len(layers) * len(hw), generator=torch.Generator().manual_seed(0))
    li, hi = perm // len(hw), perm % len(hw)
    shuffled = evaluate(lb, hb, li, hi)
    np.testing.assert_array_equal(shuffled.total_cycles.numpy(),
                                  grid.total_cycles.reshape(-1)[perm].numpy())
    # Block-circulant layers on hardware without the engine: refused with the reason.
    no_engine = ~hb.has_bc.bool()
    circulant = lb.fmt == 1
    refused = grid.valid[circulant][:, no_engine]
    assert not refused.any() and (grid.reason[circulant][:, no_engine] == 1).all()


def test_evaluate_runs_on_one_thread_and_restores_the_count(repo):
    """Whatever torch's thread count, the same numbers; the count is left as it was."""
    from a3cs_common.torch_settings import torch_threads

    hw = [load_hardware(str(repo / HW / name)) for name in
          ("zc706_fpga.yaml", "ws_32x32.yaml", "block_circulant_engine.yaml")]
    layers = load_workload(str(repo / NETS / "minatar_block_circulant.yaml")).layers
    lb, hb = LayerBatch.from_layers(layers), HardwareBatch.from_hardware(hw)
    with torch_threads(1):
        serial = evaluate_grid(lb, hb)
    with torch_threads(2):
        parallel = evaluate_grid(lb, hb)
        assert torch.get_num_threads() == 2
    np.testing.assert_array_equal(parallel.total_cycles.numpy(), serial.total_cycles.numpy())
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), torch_threads(before + 1):
        raise RuntimeError("the count is restored on an exception too")
    assert torch.get_num_threads() == before


def test_estimate_refuses_like_hw_sim(repo):
    hw = load_hardware(str(repo / HW / "ws_32x32.yaml"))
    workload = load_workload(str(repo / NETS / "minatar_block_circulant.yaml"))
    with pytest.raises(ConfigError) as sim_error:
        simulate(workload, hw)
    with pytest.raises(ConfigError) as model_error:
        estimate(workload, hw)
    assert sim_error.value.field == model_error.value.field == "block_circulant"
    tiny = hw.model_copy(update={"sram_kb": hw.sram_kb.model_copy(update={"ofmap": 0.01})})
    net = make_workload("fc", [Linear(name="fc", in_features=64, out_features=64)])
    with pytest.raises(ConfigError) as sim_error:
        simulate(net, tiny)
    with pytest.raises(ConfigError) as model_error:
        estimate(net, tiny)
    assert sim_error.value.field == model_error.value.field == "sram_kb.ofmap"


def test_resources(repo):
    zc706 = load_hardware(str(repo / HW / "zc706_fpga.yaml"))
    res = hardware_resources(zc706)
    assert res["dsp"] == 900 and res["pe_count"] == 900
    assert 0 < res["bram18k"] <= 1090 and res["sram_kb"] == 1536
    assert budget_fit(zc706) is True
    eight_bit = zc706.model_copy(update={"word_bits": 8})
    assert hardware_resources(eight_bit)["dsp"] == 450  # two 8-bit products per DSP
    bigger = zc706.model_copy(update={"pe_array": zc706.pe_array.model_copy(
        update={"rows": 31})})
    assert budget_fit(bigger) is False
    assert budget_fit(load_hardware(str(repo / HW / "ws_32x32.yaml"))) is None
    batch = HardwareBatch.from_hardware([zc706, eight_bit])
    areas = resources(batch).area_mm2
    assert areas[1] < areas[0]  # narrower PEs


def test_hardware_batch_keeps_names(repo):
    hw: Hardware = load_hardware(str(repo / HW / "ws_32x32.yaml"))
    assert HardwareBatch.from_hardware([hw]).names == ("ws_32x32",)
