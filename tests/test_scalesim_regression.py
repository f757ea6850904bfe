"""hw_sim against numbers SCALE-Sim v3 itself produced, and SCALE-Sim file round trips.

tests/data/scalesim_compute_cycles.csv was written by ``python experiments/validate_scalesim.py
--regression-data tests/data/scalesim_compute_cycles.csv`` from real SCALE-Sim 3.0.0 runs
(CALC mode): per layer, the topology row exactly as SCALE-Sim read it, the PE array, and
SCALE-Sim's compute cycles and SRAM counts.  The test rebuilds each topology file, loads it
with hw_sim's reader and checks the event engine's numbers against SCALE-Sim's.
"""

from __future__ import annotations

import configparser
import math
from pathlib import Path

import pytest

from a3cs_common.errors import ConfigError
from a3cs_common.schema import validate
from hw_sim.files import load_workload
from hw_sim.hardware import Hardware
from hw_sim.scalesim_files import (
    load_scalesim_cfg,
    load_topology_csv,
    write_scalesim_cfg,
    write_topology_csv,
)
from hw_sim.simulate import simulate
from hw_sim.workload import Conv2d, Linear, Workload
from tests.scalesim_data import read_cases

DATA = Path(__file__).parent / "data" / "scalesim_compute_cycles.csv"
HEADERS = {
    "conv": "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
            "Num Filter, Strides,",
    "gemm": "Layer, M, N, K,",
}


CASES = read_cases(DATA)


def _hardware(rows: int, cols: int, sram_kb: int, dataflow: str) -> Hardware:
    return validate(Hardware, {
        "name": "case", "clock_mhz": 1000.0, "word_bits": 8,
        "pe_array": {"rows": rows, "cols": cols, "dataflow": dataflow},
        "sram_kb": {"ifmap": sram_kb, "filter": sram_kb, "ofmap": sram_kb},
    })


def test_regression_data_covers_resnet18_and_small_arrays():
    resnet = {key[5] for key in CASES if key[0] == "resnet18" and key[2:4] == (32, 32)}
    assert resnet == {"ws", "os", "is"}
    assert all(len(CASES[key]) == 21 for key in CASES if key[0] == "resnet18")
    small = {(key[2], key[3], key[5]) for key in CASES if key[2] < 32}
    assert {(8, 8, df) for df in ("ws", "os", "is")} <= small
    assert {(16, 8, df) for df in ("ws", "os", "is")} <= small


@pytest.mark.parametrize("key", sorted(CASES), ids=lambda k: f"{k[0]}-{k[2]}x{k[3]}-{k[5]}")
def test_event_engine_reproduces_scalesim(key, tmp_path):
    topology, form, rows, cols, sram_kb, dataflow = key
    expected = CASES[key]
    path = tmp_path / f"{topology}.csv"
    path.write_text("\n".join([HEADERS[form], *(r["topology_row"] for r in expected)]) + "\n")
    workload = load_topology_csv(path)
    report = simulate(workload, _hardware(rows, cols, sram_kb, dataflow))
    for layer, ours, theirs in zip(workload.layers, report.layers, expected, strict=True):
        assert ours.name == theirs["layer"]
        assert ours.stall_cycles == 0
        assert ours.compute_cycles == int(theirs["compute_cycles"]), ours.name
        assert ours.ifmap_sram_reads == int(theirs["ifmap_sram_reads"]), ours.name
        assert ours.filter_sram_reads == int(theirs["filter_sram_reads"]), ours.name
        # SCALE-Sim's os dataflow adds rows + cols of the array to its ofmap write count for
        # every fold (systolic_compute_os.create_ofmap_demand_mat); ws and is count alike.
        slip = 0
        if dataflow == "os":
            slip = (math.ceil(layer.gemm_m / rows) * math.ceil(layer.gemm_n / cols)
                    * layer.groups * (rows + cols))
        assert ours.ofmap_sram_writes + slip == int(theirs["ofmap_sram_writes"]), ours.name


# --- writing SCALE-Sim's files --------------------------------------------------------------

# Every key SCALE-Sim 3.0.0's scale_config.read_conf_file reads when sparsity is off.
SCALESIM_CFG_KEYS = {
    "general": {"run_name"},
    "run_presets": {"interfacebandwidth", "useramulatortrace"},
    "architecture_presets": {"arrayheight", "arraywidth", "ifmapsramszkb", "filtersramszkb",
                             "ofmapsramszkb", "ifmapoffset", "filteroffset", "ofmapoffset",
                             "dataflow", "readrequestbuffer", "writerequestbuffer"},
    "layout": {"ifmapcustomlayout", "filtercustomlayout", "ifmapsrambankbandwidth",
               "ifmapsrambanknum", "ifmapsrambankport", "filtersrambankbandwidth",
               "filtersrambanknum", "filtersrambankport"},
    "sparsity": {"sparsitysupport"},
}


def _gemms(workload: Workload) -> list[tuple[int, int, int, int]]:
    return [(lay.gemm_m, lay.gemm_n, lay.gemm_k, lay.groups) for lay in workload.layers]


def test_topology_round_trip_keeps_every_gemm(repo, tmp_path):
    for name in ("minatar_reference", "mlp_policy"):
        workload = load_workload(str(repo / f"experiments/workloads/{name}.yaml"))
        path = write_topology_csv(workload, tmp_path / f"{name}.csv")
        lines = path.read_text().splitlines()
        assert all(line.endswith(",") for line in lines)  # SCALE-Sim drops the last cell
        assert ("IFMAP" in lines[0]) == (name == "minatar_reference")  # mlp: GEMM form
        back = load_topology_csv(path)
        assert [lay.name for lay in back.layers] == [lay.name for lay in workload.layers]
        assert _gemms(back) == _gemms(workload)


def test_topology_round_trip_padding_stride_depthwise_and_batch(tmp_path):
    workload = Workload(name="mix", layers=(
        Conv2d(name="pad_s2", in_channels=3, out_channels=8, in_height=9, in_width=12,
               kernel_size=3, stride=2, padding=1),
        Conv2d(name="ceil_s2", in_channels=8, out_channels=8, in_height=10, in_width=10,
               kernel_size=3, stride=2, ceil_mode=True),
        Conv2d(name="blockDP", in_channels=8, out_channels=16, in_height=6, in_width=6,
               kernel_size=3, groups=8),
        Linear(name="head", in_features=64, out_features=10, batch=4),
    ))
    back = load_topology_csv(write_topology_csv(workload, tmp_path / "mix.csv"))
    assert _gemms(back) == _gemms(workload)
    for ours, theirs in zip(workload.layers[:3], back.layers[:3], strict=True):  # convs
        assert (ours.out_height, ours.out_width) == (theirs.out_height, theirs.out_width)
    hw = _hardware(8, 8, 16, "ws")
    assert simulate(back, hw).compute_cycles == simulate(workload, hw).compute_cycles


@pytest.mark.parametrize(("layer", "field"), [
    (Linear(name="bc", in_features=8, out_features=8,
            weight_format={"type": "block_circulant", "block_size": 4}), "weight_format"),
    (Conv2d(name="c", in_channels=2, out_channels=2, in_height=5, in_width=5, kernel_size=3,
            batch=2), "batch"),
    (Conv2d(name="c", in_channels=2, out_channels=2, in_height=5, in_width=5, kernel_size=3,
            stride=(1, 2)), "stride"),
    (Conv2d(name="c", in_channels=4, out_channels=4, in_height=5, in_width=5, kernel_size=3,
            groups=2), "groups"),
    (Conv2d(name="dw", in_channels=4, out_channels=4, in_height=5, in_width=5, kernel_size=3,
            groups=4), "name"),
    (Conv2d(name="DP_dense", in_channels=4, out_channels=4, in_height=5, in_width=5,
            kernel_size=3), "name"),
    (Linear(name="a,b", in_features=4, out_features=4), "name"),
])
def test_topology_writer_rejects_what_scalesim_cannot_describe(layer, field, tmp_path):
    path = tmp_path / "t.csv"
    with pytest.raises(ConfigError) as info:
        write_topology_csv(Workload(name="w", layers=(layer,)), path)
    assert info.value.field == f"layers[0].{field}"
    assert "\n" not in str(info.value)
    assert not path.exists()


@pytest.mark.parametrize("bandwidth", [None, 10, 3])
def test_cfg_round_trip(repo, tmp_path, bandwidth):
    hw = validate(Hardware, {
        "name": "rt", "clock_mhz": 250.0,
        "pe_array": {"rows": 16, "cols": 8, "dataflow": "is"},
        "sram_kb": {"ifmap": 32, "filter": 16, "ofmap": 8},
        "dram": {"bandwidth_words_per_cycle": bandwidth},
    })
    path = write_scalesim_cfg(hw, tmp_path / "rt.cfg")
    assert load_scalesim_cfg(path, clock_mhz=250.0) == hw
    parser = configparser.ConfigParser()
    parser.read_string(path.read_text())
    for section, keys in SCALESIM_CFG_KEYS.items():
        assert keys <= set(parser[section]), section
    mode = parser["run_presets"]["interfacebandwidth"]
    assert mode == ("CALC" if bandwidth is None else "USER")
    if bandwidth is not None:  # USER mode: SCALE-Sim reads ifmap/filter rates from [layout]
        for key in ("ifmapsrambankbandwidth", "filtersrambankbandwidth"):
            assert parser["layout"][key] == str(bandwidth)
        assert parser["architecture_presets"]["bandwidth"] == str(bandwidth)


def test_cfg_shipped_hardware_round_trip(repo, tmp_path):
    from hw_sim.files import load_hardware

    hw = load_hardware(str(repo / "experiments/hw/ws_32x32.yaml"))
    back = load_scalesim_cfg(write_scalesim_cfg(hw, tmp_path / "ws.cfg"), clock_mhz=hw.clock_mhz)
    assert back == hw


def test_cfg_writer_maps_wide_words_and_rejects_partial_kb(tmp_path):
    wide = validate(Hardware, {
        "name": "w16 array", "clock_mhz": 100.0, "word_bits": 16,
        "pe_array": {"rows": 4, "cols": 4, "dataflow": "os"},
        "sram_kb": {"ifmap": 8, "filter": 8, "ofmap": 8},
    })
    back = load_scalesim_cfg(write_scalesim_cfg(wide, tmp_path / "w.cfg"))
    assert back.name == "w16_array"  # SCALE-Sim's run_name is a folder name
    assert all(back.sram_words(op) == wide.sram_words(op) for op in ("ifmap", "filter", "ofmap"))
    odd = validate(Hardware, {
        "name": "odd", "clock_mhz": 100.0,
        "pe_array": {"rows": 4, "cols": 4, "dataflow": "os"},
        "sram_kb": {"ifmap": 1.5, "filter": 8, "ofmap": 8},
    })
    with pytest.raises(ConfigError) as info:
        write_scalesim_cfg(odd, tmp_path / "odd.cfg")
    assert info.value.field == "sram_kb.ifmap"
    assert not (tmp_path / "odd.cfg").exists()


# --- the validation and benchmark scripts reject bad arguments before any work --------------


def _script(repo: Path, relative: str):
    import importlib.util
    import sys

    sys.path.insert(0, str(repo / "experiments"))  # bench_hw_sim imports validate_scalesim
    spec = importlib.util.spec_from_file_location(Path(relative).stem, repo / relative)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("script", "argv", "flag"), [
    ("experiments/validate_scalesim.py", ["--bandwidth", "0"], "--bandwidth"),
    ("experiments/validate_scalesim.py", ["--scalesim-timeout", "-1"], "--scalesim-timeout"),
    ("experiments/validate_scalesim.py", ["--repeats", "0"], "--repeats"),
    ("benchmarks/bench_hw_sim.py", ["--repeats", "0"], "--repeats"),
    ("benchmarks/bench_hw_sim.py", ["--agent-repeats", "0"], "--agent-repeats"),
    ("benchmarks/bench_hw_sim.py", ["--bandwidth", "-3"], "--bandwidth"),
    ("benchmarks/bench_rl.py", ["--threads", "0"], "--threads"),
    ("benchmarks/bench_rl.py", ["--steps", "-5"], "--steps"),
    ("benchmarks/bench_rl.py", ["--episodes", "0"], "--episodes"),
    ("benchmarks/bench_rl.py", ["--seeds", "1", "1"], "--seeds"),
])
def test_scripts_reject_bad_arguments(repo, capsys, script, argv, flag):
    assert _script(repo, script).main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {flag}:") and "\n" not in err
