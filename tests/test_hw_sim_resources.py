"""FPGA resources computed in hw_sim from the engine registry equal the analytical model's.

Both come from :data:`hw_sim.resources.ENGINE_UNITS` (hw_sim with plain numbers, the
analytical model with tensors over a batch); the test holds them equal on random
configurations, checks a hand count, and the ``a3cs simulate --resources`` output.
"""

from __future__ import annotations

import json
import random

import pytest

from accelerator_model.encode import HardwareBatch
from accelerator_model.resources import hardware_resources, resources
from hw_sim.hardware import Hardware
from hw_sim.resources import ENGINE_UNITS, fpga_resources


def _random_hardware(rng: random.Random) -> Hardware:
    bits = rng.choice((4, 8, 12, 16, 32))
    data = {
        "name": "r", "clock_mhz": 200, "word_bits": bits,
        "pe_array": {"rows": rng.randint(1, 64), "cols": rng.randint(1, 64),
                     "dataflow": rng.choice(("ws", "os", "is"))},
        "sram_kb": {op: rng.choice((0.5, 1, 8, 18, 64, 100, 512)) for op in
                    ("ifmap", "filter", "ofmap")},
    }
    if rng.random() < 0.5:
        data["block_circulant"] = {
            "fft_points": rng.choice((2, 8, 16, 64)), "fft_units": rng.randint(1, 8),
            "ifft_units": rng.randint(1, 8), "fft_pipeline_depth": 4,
            "complex_mac_lanes": rng.randint(1, 256)}
    if rng.random() < 0.5:
        data["one_by_n"] = {"vector_lanes": rng.randint(1, 64),
                            "lane_width": rng.choice((1, 2, 4, 8))}
    return Hardware.model_validate(data)


def test_registry_covers_every_engine_with_hardware():
    from hw_sim.engines import ENGINES

    # Every engine but N:M (the array skipping rows) adds units; none is unknown.
    assert set(ENGINE_UNITS) == set(ENGINES) - {"n_m"}


@pytest.mark.parametrize("seed", range(60))
def test_hw_sim_resources_equal_analytical_model(seed):
    hw = _random_hardware(random.Random(seed))
    ours = fpga_resources(hw)
    model = hardware_resources(hw)
    assert ours.dsp == model["dsp"]
    assert ours.bram18k == model["bram18k"]
    assert ours.multipliers == model["multipliers"]


def test_batch_rows_equal_single_configurations():
    hws = [_random_hardware(random.Random(100 + i)) for i in range(20)]
    batch = resources(HardwareBatch.from_hardware(hws))
    for i, hw in enumerate(hws):
        ours = fpga_resources(hw)
        assert (float(batch.dsp[i]), float(batch.bram18k[i])) == (ours.dsp, ours.bram18k)


def test_hand_count():
    """16x16 ws array, 16-bit words, 64 KiB per buffer; FFT engine with 16-point units
    (2 forward, 2 inverse, 32 complex MAC lanes); no 1xN engine.

    Multipliers: 256 PEs + 4 x 32 lanes + 4 x (16/2 x log2 16 = 32 butterflies) x 4 units
    = 256 + 128 + 512 = 896; DSP = 896 x 16 / 16 = 896.  Banks: ifmap max(16 rows,
    2 x 16 FFT inputs) = 32 banks of 1024 words -> one 1K x 18 RAMB18 each (32); filter
    max(16 cols, 32 lanes) = 32 banks -> 32; ofmap max(16, 2 x 16) = 32 -> 32.  BRAM 96."""
    hw = Hardware.model_validate({
        "name": "h", "clock_mhz": 200, "word_bits": 16,
        "pe_array": {"rows": 16, "cols": 16, "dataflow": "ws"},
        "sram_kb": {"ifmap": 64, "filter": 64, "ofmap": 64},
        "block_circulant": {"fft_points": 16, "fft_units": 2, "ifft_units": 2,
                            "fft_pipeline_depth": 4, "complex_mac_lanes": 32}})
    res = fpga_resources(hw)
    assert (res.multipliers, res.dsp, res.bram18k) == (896, 896, 96)
    assert res.banks == {"ifmap": 32, "filter": 32, "ofmap": 32}


def test_simulate_prints_resources(repo, capsys):
    from a3cs.cli import main

    args = ["simulate", "--hw", str(repo / "experiments/hw/zc706_fpga.yaml"), "--workload",
            str(repo / "experiments/workloads/minatar_reference.yaml"), "--resources"]
    assert main([*args, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["resources"]["dsp"] == 900 and data["within_fpga_budget"] is True
    assert main(["estimate", *args[1:], "--format", "json"]) == 0
    estimated = json.loads(capsys.readouterr().out)
    assert {k: data["resources"][k] for k in ("dsp", "bram18k")} == {
        k: estimated["resources"][k] for k in ("dsp", "bram18k")}
    assert main(args) == 0
    assert "FPGA resources" in capsys.readouterr().out
