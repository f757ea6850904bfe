"""hw_sim against numbers SCALE-Sim v3 produced on layer-wise N:M sparse layers, and how
SCALE-Sim's sparse files are read.

tests/data/scalesim_n_m_cycles.csv was written by ``python experiments/validate_scalesim.py
--n-m-only --venv /work/scalesim-venv --n-m-regression-data tests/data/scalesim_n_m_cycles.csv``
from real SCALE-Sim 3.0.0 runs (CALC mode, ``SparsitySupport = true``, ``OptimizedMapping =
false``): per layer, the topology row exactly as SCALE-Sim read it (``..., n:m,``), the PE
array, and SCALE-Sim's compute cycles and SRAM counts.  Each case is rebuilt here as the
topology file and the cfg SCALE-Sim read, loaded through hw_sim's readers and simulated; SCALE-Sim
is not needed.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from a3cs_common.errors import ConfigError
from a3cs_common.formats import NM
from a3cs_common.schema import validate
from hw_sim.hardware import Hardware
from hw_sim.scalesim_files import load_scalesim_cfg, load_topology_csv, write_scalesim_cfg
from hw_sim.simulate import simulate
from hw_sim.workload import Linear, Workload
from tests.scalesim_data import read_cases

DATA = Path(__file__).parent / "data" / "scalesim_n_m_cycles.csv"
HEADERS = {
    "conv": "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
            "Num Filter, Strides, Sparsity,",
    "gemm": "Layer, M, N, K, Sparsity,",
}
CASES = read_cases(DATA)


def _hardware(rows: int, cols: int, sram_kb: int, dataflow: str, n_m: bool = True) -> Hardware:
    return validate(Hardware, {
        "name": "case", "clock_mhz": 1000.0, "word_bits": 8,
        "pe_array": {"rows": rows, "cols": cols, "dataflow": dataflow},
        "sram_kb": {"ifmap": sram_kb, "filter": sram_kb, "ofmap": sram_kb}, "n_m": n_m,
    })


def _kept(k: int, n: int, m: int) -> int:
    return k // m * n + min(n, k % m)


def test_regression_data_covers_ratios_dataflows_arrays_and_ragged_k():
    rows = [row for case in CASES.values() for row in case]
    assert {"1:2", "2:4", "1:4", "2:8", "1:8"} <= {row["ratio"] for row in rows}
    assert {key[5] for key in CASES} == {"ws", "os", "is"}
    assert {(key[2], key[3]) for key in CASES} >= {(32, 32), (8, 8), (16, 8)}
    assert {key[1] for key in CASES} == {"conv", "gemm"}
    ragged = [row for row in rows if _row_k(row) % int(row["ratio"].split(":")[1])]
    assert ragged, "no layer whose K the group length m does not divide"
    assert any(float(row["ifmap_sram_reads"]) % 1 for row in rows)  # SCALE-Sim's float count


def _row_k(row: dict[str, str]) -> int:
    cells = [cell.strip() for cell in row["topology_row"].split(",")]
    if row["form"] == "gemm":
        return int(cells[3])
    return int(cells[3]) * int(cells[4]) * int(cells[5])


def _write_topology(path: Path, form: str, rows: list[str]) -> Path:
    path.write_text("\n".join([HEADERS[form], *rows]) + "\n")
    return path


@pytest.mark.parametrize("key", sorted(CASES), ids=lambda k: f"{k[0]}-{k[2]}x{k[3]}-{k[5]}")
def test_hw_sim_reproduces_scalesim_on_n_m(key, tmp_path):
    topology, form, rows, cols, sram_kb, dataflow = key
    expected = CASES[key]
    path = _write_topology(tmp_path / f"{topology}.csv", form,
                           [r["topology_row"] for r in expected])
    cfg = write_scalesim_cfg(_hardware(rows, cols, sram_kb, dataflow), tmp_path / "n_m.cfg")
    hw = load_scalesim_cfg(cfg)
    assert hw.n_m
    workload = load_topology_csv(path)
    report = simulate(workload, hw)
    for layer, ours, theirs in zip(workload.layers, report.layers, expected, strict=True):
        fmt = layer.weight_format
        assert ours.name == theirs["layer"]
        assert isinstance(fmt, NM) and fmt.label() == theirs["ratio"]
        assert ours.stall_cycles == 0
        assert ours.compute_cycles == int(theirs["compute_cycles"]), ours.name
        # The dense SRAM counts with K' for K (as SCALE-Sim's) ...
        assert ours.filter_sram_reads == int(theirs["filter_sram_reads"]), ours.name
        slip = 0  # ... up to SCALE-Sim's os ofmap-write slip (rows + cols per fold) ...
        if dataflow == "os":
            slip = math.ceil(layer.gemm_m / rows) * math.ceil(layer.gemm_n / cols) * (rows + cols)
        assert ours.ofmap_sram_writes + slip == int(theirs["ofmap_sram_writes"]), ours.name
        # ... and its ws ifmap reads, which it multiplies by m/n (dense window reads).
        factor = fmt.m / fmt.n if dataflow == "ws" else 1.0
        assert ours.ifmap_sram_reads * factor == pytest.approx(
            float(theirs["ifmap_sram_reads"]), rel=1e-9), ours.name


@pytest.mark.parametrize("dataflow", ["ws", "os", "is"])
def test_compute_cycles_are_the_dense_ones_with_the_kept_reduction(dataflow):
    """SCALE-Sim's recorded cycles equal the dense closed form with K' = floor(K/m) n +
    min(n, K mod m) for K, for every recorded GEMM row."""
    for (_, form, rows, cols, _, flow), expected in CASES.items():
        if form != "gemm" or flow != dataflow:
            continue
        for row in expected:
            cells = [cell.strip() for cell in row["topology_row"].split(",")]
            m_, n_, k = (int(c) for c in cells[1:4])
            n, m = (int(c) for c in row["ratio"].split(":"))
            kept = _kept(k, n, m)
            cycles = {
                "ws": (2 * rows + cols + m_ - 2) * -(-kept // rows) * -(-n_ // cols) - 1,
                "os": (rows + cols + kept - 2) * -(-m_ // rows) * -(-n_ // cols) - 1,
                "is": (2 * rows + cols + n_ - 2) * -(-kept // rows) * -(-m_ // cols) - 1,
            }[dataflow]
            assert cycles == int(row["compute_cycles"]), row["layer"]


# --- what hw_sim refuses ------------------------------------------------------------------


def _cfg_text(tmp_path: Path, **sparsity: str) -> Path:
    path = write_scalesim_cfg(_hardware(8, 8, 16, "ws"), tmp_path / "n_m.cfg")
    text = path.read_text()
    for key, value in sparsity.items():
        text = text.replace(f"{key} = false", f"{key} = {value}")
    path.write_text(text)
    return path


def test_row_wise_optimized_mapping_is_refused_in_one_line(tmp_path):
    path = _cfg_text(tmp_path, OptimizedMapping="true")
    assert "OptimizedMapping = true" in path.read_text()
    with pytest.raises(ConfigError) as info:
        load_scalesim_cfg(path)
    assert info.value.field == "sparsity.OptimizedMapping"
    assert "sparsity.OptimizedMapping" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("form", ["conv", "gemm"])
@pytest.mark.parametrize("cell", ["5:4", "0:4", "NPU"])
def test_bad_sparsity_cell_names_its_line(tmp_path, form, cell):
    good = "ok, 6, 6, 3, 3, 2, 4, 1, 2:4," if form == "conv" else "ok, 4, 8, 16, 2:4,"
    bad = ("bad, 6, 6, 3, 3, 2, 4, 1, " if form == "conv" else "bad, 4, 8, 16, ") + cell + ","
    path = _write_topology(tmp_path / "t.csv", form, [good, bad])
    with pytest.raises(ConfigError) as info:
        load_topology_csv(path)
    assert info.value.field == "line 3.Sparsity"
    assert "line 3.Sparsity" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("form", ["conv", "gemm"])
def test_ratio_without_trailing_comma_is_dropped_as_scalesim_drops_it(tmp_path, form):
    row = "l, 6, 6, 3, 3, 2, 4, 1, 2:4" if form == "conv" else "l, 4, 8, 16, 2:4"
    (layer,) = load_topology_csv(_write_topology(tmp_path / "t.csv", form, [row])).layers
    assert layer.weight_format.type == "dense"
    (layer,) = load_topology_csv(_write_topology(tmp_path / "t.csv", form, [row + ","])).layers
    assert layer.weight_format == NM(n=2, m=4)


def test_n_m_layer_on_hardware_without_n_m_names_n_m(tmp_path):
    workload = Workload(name="w", layers=(
        Linear(name="fc", in_features=64, out_features=8, weight_format=NM(n=2, m=4)),))
    hw = load_scalesim_cfg(write_scalesim_cfg(_hardware(8, 8, 16, "ws", n_m=False),
                                              tmp_path / "dense.cfg"))
    assert "SparsitySupport = false" in (tmp_path / "dense.cfg").read_text()
    with pytest.raises(ConfigError) as info:
        simulate(workload, hw)
    assert info.value.field == "n_m"
    assert "\n" not in str(info.value)
