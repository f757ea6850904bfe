"""FPGA resources computed in hw_sim from the engine registry equal the analytical model's.

Both come from :data:`hw_sim.resources.ENGINE_UNITS` (hw_sim with plain numbers, the
analytical model with tensors over a batch); the test holds them equal on random
configurations, checks a hand count, and the ``a3cs simulate --resources`` output.
"""

from __future__ import annotations

import itertools
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


# ------------------------------------------------------------------------------------------
# Static power


def test_static_power_hand_count():
    """8x8 array, 16-bit words, FFT engine (8 points, 1 + 1 units, 4 lanes), 1xN engine
    (2 lanes of width 4, 8-deep accumulators), 1 mW/KiB SRAM, 5 mW DRAM interface.

    Per unit (Aladdin 40 nm scaled from 32 bits): multiplier 0.07786052 x (16/32)^2 =
    0.01946513 mW, adder 0.002249908 x 16/32 = 0.001124954 mW, register word 16 x
    7.395312e-5 = 1.183250e-3 mW.
    * PE array: 64 x (mult + add + 3 register words) = 64 x 0.02413983 = 1.5449494 mW.
    * FFT engine: 12 butterflies (8/2 x log2 8) x 2 units = 24; multipliers 4 x 4 + 4 x 24 =
      112, adders 16 + 6 x 24 = 160: 2.1800946 + 0.1799926 = 2.3600872 mW.
    * 1xN: 8 multipliers + 8 adders + 2 x 4 x 8 accumulator words: 0.1557210 + 0.0089996
      + 0.0757280 = 0.2404487 mW.
    * SRAM 3 x 4 KiB x 1 mW = 12 mW; DRAM interface 5 mW."""
    from hw_sim.power import static_power

    hw = Hardware.model_validate({
        "name": "p", "clock_mhz": 100, "word_bits": 16,
        "pe_array": {"rows": 8, "cols": 8, "dataflow": "os"},
        "sram_kb": {"ifmap": 4, "filter": 4, "ofmap": 4},
        "block_circulant": {"fft_points": 8, "fft_units": 1, "ifft_units": 1,
                            "fft_pipeline_depth": 2, "complex_mac_lanes": 4},
        "one_by_n": {"vector_lanes": 2, "lane_width": 4, "accumulator_depth": 8},
        "energy": {"static": {"sram_mw_per_kib": 1.0, "dram_interface_mw": 5.0}}})
    power = static_power(hw)
    assert power.pe_array_mw == pytest.approx(1.5449494, rel=1e-6)
    assert power.fft_engine_mw == pytest.approx(2.3600872, rel=1e-6)
    assert power.vector_engine_mw == pytest.approx(0.2404487, rel=1e-6)
    assert (power.sram_mw, power.dram_interface_mw) == (12.0, 5.0)
    assert power.total_mw == pytest.approx(1.5449494 + 2.3600872 + 0.2404487 + 17, rel=1e-6)


def test_static_power_defaults_cacti_sram_and_ddr3_standby():
    """Unset, the SRAM leakage is CACTI's per buffer size (64 KiB: 84.0484 mW, 16 KiB:
    22.3791 mW from the generated table) and the DRAM's background is one x64 rank of DDR3-1600
    x8 devices in precharge standby: 8 x 32 mA x 1.5 V = 384 mW."""
    from hw_sim.power import sram_leakage_mw, static_power

    hw = Hardware.model_validate({
        "name": "p", "clock_mhz": 100, "pe_array": {"rows": 8, "cols": 8, "dataflow": "ws"},
        "sram_kb": {"ifmap": 64, "filter": 64, "ofmap": 16}})
    power = static_power(hw)
    assert power.sram_mw == pytest.approx(2 * 84.0484 + 22.3791, rel=1e-9)
    assert power.dram_interface_mw == pytest.approx(384.0)
    # Linear between CACTI's points, proportional beyond them.
    assert sram_leakage_mw(48) == pytest.approx((42.0241 + 84.0484) / 2)
    assert sram_leakage_mw(0.5) == pytest.approx(1.38972 / 2)
    assert sram_leakage_mw(2048) == pytest.approx(2 * 1228.21)
    sizes = [0.25, 1, 3, 16, 100, 1024, 4096]
    assert all(sram_leakage_mw(a) < sram_leakage_mw(b) for a, b in itertools.pairwise(sizes))


def test_cacti_config_replaces_only_the_named_settings():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    from cacti_sram import SETTINGS, config

    from a3cs_common.errors import ConfigError

    template = "\n".join(["-size (bytes) 131072", *(f"{key} x" for key in SETTINGS),
                          "-operating temperature (K) 360"])
    text = config(template, 2048)
    assert "-size (bytes) 2048" in text and "-operating temperature (K) 360" in text
    assert '-cache type "ram"' in text and "-technology (u) 0.045" in text
    with pytest.raises(ConfigError, match="block size"):
        config(template.replace("-block size (bytes) x", ""), 2048)


def test_cacti_script_without_a_built_cacti_exits_2(tmp_path, capsys):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    from cacti_sram import main

    assert main(["--cacti", str(tmp_path), "--out", str(tmp_path / "t.py")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cacti_sram.py: error: --cacti") and "\n" not in err
    assert not (tmp_path / "t.py").exists()


def test_static_energy_in_reports_simulate_equals_estimate(repo):
    from accelerator_model.model import estimate
    from hw_sim.files import load_hardware, load_workload
    from hw_sim.simulate import simulate

    hw = load_hardware(str(repo / "experiments/hw/zc706_fpga.yaml"))
    workload = load_workload(str(repo / "experiments/workloads/minatar_reference.yaml"))
    sim = simulate(workload, hw)
    est = estimate(workload, hw)
    assert sim.static_power_mw == est.static_power_mw
    s = sim.summary()
    assert s["static_energy_pj"] == pytest.approx(s["static_power_mw"] * sim.latency_s * 1e9)
    assert s["total_energy_per_inference_uj"] == pytest.approx(
        (sim.energy_pj + s["static_energy_pj"]) * 1e-6)
    assert s["average_power_mw"] == pytest.approx(
        sim.energy_pj * 1e-9 / sim.latency_s + s["static_power_mw"])
    assert "static power" in sim.to_table() and s["static_power_mw"] > 0
