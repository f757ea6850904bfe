"""``a3cs estimate`` and ``a3cs accel-search``: end to end, and one-line errors (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from a3cs.cli import main

HW = "experiments/hw"
NET = "experiments/workloads/minatar_reference.yaml"


def _one_line_error(capsys: pytest.CaptureFixture, code: int, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    for needle in needles:
        assert needle in err
    return err


def test_estimate_prints_simulate_table_and_json(repo, capsys):
    args = ["--hw", str(repo / HW / "zc706_fpga.yaml"), "--workload", str(repo / NET)]
    assert main(["simulate", *args]) == 0
    simulated = capsys.readouterr().out
    assert main(["estimate", *args]) == 0
    estimated = capsys.readouterr().out
    assert estimated.replace("accelerator_model", "hw_sim/event") == simulated
    assert main(["simulate", *args, "--format", "json"]) == 0
    sim = json.loads(capsys.readouterr().out)
    assert main(["estimate", *args, "--format", "json", "--resources"]) == 0
    est = json.loads(capsys.readouterr().out)
    assert est["source"] == "accelerator_model" and est["within_budget"] is True
    assert est["resources"]["dsp"] == 900
    assert set(est["summary"]) == set(sim["summary"])
    for a, b in zip(sim["layers"], est["layers"], strict=True):
        assert a.keys() == b.keys()
        assert a["total_cycles"] == b["total_cycles"]


def test_estimate_bad_input(repo, tmp_path, capsys):
    _one_line_error(capsys, main(["estimate", "--hw", str(tmp_path / "none.yaml"),
                                  "--workload", str(repo / NET)]), "--hw")
    _one_line_error(capsys, main(["estimate", "--hw", str(repo / HW / "ws_32x32.yaml"),
                                  "--workload",
                                  str(repo / "experiments/workloads/minatar_block_circulant.yaml")]),
                    "block_circulant", "layer 'conv'")
    bad = tmp_path / "hw.yaml"
    bad.write_text("name: x\nclock_mhz: 200\npe_array: {rows: 0, cols: 4, dataflow: ws}\n"
                   "sram_kb: {ifmap: 1, filter: 1, ofmap: 1}\n")
    _one_line_error(capsys, main(["estimate", "--hw", str(bad), "--workload", str(repo / NET)]),
                    "pe_array.rows")


SMALL_SPACE = """name: small
base: {base}
parameters:
  pe_shape: {{rows: [4, 12, 30], cols: [16, 30, 128]}}
  dataflow: [ws, os]
  sram_filter_kb: [32, 512]
  word_bits: [8, 16]
"""


@pytest.mark.slow
def test_accel_search_writes_hardware_that_simulate_loads(repo, tmp_path, capsys):
    """All three searches on a 72-configuration space, then simulate/estimate the result
    (about 4 s)."""
    space = tmp_path / "space.yaml"
    space.write_text(SMALL_SPACE.format(base=repo / HW / "zc706_fpga.yaml"))
    out = tmp_path / "run"
    code = main(["accel-search", "--workload", str(repo / NET), "--space", str(space),
                 "--method", "all", "--steps", "20", "--out", str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "exhaustive" in printed and "differentiable" in printed
    report = json.loads((out / "search.json").read_text())
    results = report["results"]
    assert report["space_size"] == 72
    assert results["differentiable"]["gap_to_exhaustive"] <= 0.02
    assert results["random"]["config_evaluations"] >= 1
    assert main(["simulate", "--hw", str(out / "hardware.yaml"), "--workload", str(repo / NET),
                 "--format", "json"]) == 0
    simulated = json.loads(capsys.readouterr().out)
    assert simulated["summary"]["latency_s"] == pytest.approx(
        results["differentiable"]["latency_s"], rel=1e-6)
    assert main(["estimate", "--hw", str(out / "hardware.yaml"), "--workload", str(repo / NET),
                 "--resources"]) == 0
    assert "within budget" in capsys.readouterr().out


def test_accel_search_chunks(repo, tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text(f"name: piped\nbase: {repo / HW / 'zc706_fpga.yaml'}\n"
                     "objective: throughput\nchunks: {count: 2}\nparameters:\n"
                     "  pe_shape: [[8, 8], [16, 24]]\n  sram_filter_kb: [32, 256]\n"
                     "  sram_ifmap_kb: [16]\n  sram_ofmap_kb: [16]\n")
    out = tmp_path / "run"
    assert main(["accel-search", "--workload", str(repo / NET), "--space", str(space),
                 "--method", "exhaustive", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    for c in (0, 1):
        assert main(["simulate", "--hw", str(out / f"chunk{c}_hardware.yaml"), "--workload",
                     str(out / f"chunk{c}_workload.yaml")]) == 0
    assert "piped_chunk1" in capsys.readouterr().out


def test_accel_search_bad_input(repo, tmp_path, capsys):
    def search(space_text: str, *extra: str) -> int:
        space = tmp_path / "space.yaml"
        space.write_text(space_text)
        return main(["accel-search", "--workload", str(repo / NET), "--space", str(space),
                     "--out", str(tmp_path / "run"), "--quiet", *extra])

    base = repo / HW / "zc706_fpga.yaml"
    _one_line_error(capsys, search(f"name: x\nbase: {base}\nparameters:\n  pe_colls: [4]\n"),
                    "parameters.pe_colls", "did you mean 'pe_cols'")
    _one_line_error(capsys, search(f"name: x\nbase: {base}\nparameters: [pe_rows\n"),
                    "--space", "valid YAML")
    _one_line_error(capsys, search(f"name: x\nbase: {base}\nparameters:\n  pe_rows: [4]\n",
                                   "--steps", "0"), "--steps")
    _one_line_error(capsys, search(f"name: x\nbase: {base}\nparameters:\n  pe_rows: [4]\n",
                                   "--lr", "-1"), "--lr")
    _one_line_error(capsys, search(f"name: x\nbase: {base}\nparameters:\n  fft_units: [4]\n"),
                    "parameters.fft_units", "block_circulant engine")
    negative = tmp_path / "negative.yaml"
    negative.write_text(Path(base).read_text().replace("bram18k: 1090", "bram18k: 0"))
    _one_line_error(capsys, search(f"name: x\nbase: {negative}\nparameters:\n  pe_rows: [4]\n"),
                    "budget.fpga.bram18k")
    tight = tmp_path / "tight.yaml"
    tight.write_text(Path(base).read_text().replace("dsp: 900", "dsp: 3"))
    _one_line_error(capsys, search(f"name: x\nbase: {tight}\nparameters:\n  pe_rows: [4, 8]\n"),
                    "budget", "smallest needs 120 dsp")
    _one_line_error(capsys, main(["accel-search", "--workload", str(repo / NET), "--space",
                                  str(tmp_path / "missing.yaml")]), "--space")
    _one_line_error(capsys, main(["accel-search", "--workload", str(repo / NET), "--space",
                                  str(repo / HW / "zc706_space.yaml"), "--method", "greedy"]),
                    "--method")
