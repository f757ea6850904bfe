"""`a3cs simulate` end to end, and one test per kind of bad input (one line, exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from a3cs.cli import main


def test_simulate_table(repo, capsys):
    code = main(["simulate", "--hw", str(repo / "experiments/hw/ws_32x32.yaml"),
                 "--workload", str(repo / "experiments/workloads/minatar_reference.yaml")])
    out = capsys.readouterr().out
    assert code == 0
    assert "total cycles" in out and "FPS" in out and "energy" in out
    for layer in ("conv", "fc", "policy", "value"):
        assert f"\n{layer} " in out


def test_simulate_json_and_out_file(repo, capsys, tmp_path):
    out_file = tmp_path / "report.json"
    code = main(["simulate", "--hw", str(repo / "experiments/hw/block_circulant_engine.yaml"),
                 "--workload", str(repo / "experiments/workloads/minatar_block_circulant.yaml"),
                 "--format", "json", "--out", str(out_file)])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert json.loads(out_file.read_text()) == report
    assert [lay["engine"] for lay in report["layers"]] == [
        "block_circulant", "block_circulant", "systolic", "systolic"]
    summary = report["summary"]
    assert summary["total_cycles"] == sum(lay["total_cycles"] for lay in report["layers"])
    assert summary["fps"] > 0 and summary["energy_pj"] > 0


def test_simulate_scalesim_files(repo, tmp_path, capsys):
    cfg = tmp_path / "scale.cfg"
    cfg.write_text("[general]\nrun_name = t\n[architecture_presets]\nArrayHeight: 8\n"
                   "ArrayWidth: 8\nIfmapSramSzkB: 64\nFilterSramSzkB: 64\nOfmapSramSzkB: 64\n"
                   "Dataflow : os\nBandwidth : 10\n[run_presets]\nInterfaceBandwidth: CALC\n")
    assert main(["simulate", "--hw", str(cfg), "--workload",
                 str(repo / "experiments/workloads/resnet18.csv"), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["layers"]) == 21 and report["summary"]["stall_cycles"] == 0


def test_simulate_trace(repo, tmp_path, capsys):
    trace = tmp_path / "conv.csv"
    code = main(["simulate", "--hw", str(repo / "experiments/hw/one_by_n_engine.yaml"),
                 "--workload", str(repo / "experiments/workloads/minatar_one_by_4.yaml"),
                 "--trace-layer", "conv", "--trace", str(trace)])
    assert code == 0 and str(trace) in capsys.readouterr().out
    lines = trace.read_text().splitlines()
    assert lines[0].startswith("layer,cycle,step,phase,macs")
    assert len(lines) > 100


def _bad(args, capsys):
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _yaml(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


HW = ("name: h\nclock_mhz: 100\npe_array: {rows: 4, cols: 4, dataflow: ws}\n"
      "sram_kb: {ifmap: 4, filter: 4, ofmap: 4}\n")
NET = ("name: n\nlayers:\n  - {name: fc, kind: linear, in_features: 16, out_features: 8}\n")


@pytest.mark.parametrize(("hw", "net", "expected"), [
    (HW, NET.replace("out_features: 8}", "out_features: 8, weight_format: "
                     "{type: block_circulant, block_size: 32}}"),
     "layers[0].weight_format.block_size: got 32; allowed: a power of two dividing"),
    (HW, NET.replace("out_features: 8}", "out_features: 8, weight_format: "
                     "{type: one_by_n, n: 4, mask: ['1', '0']}}"),
     "layers[0].weight_format.mask: got 'shape 2x1'; allowed: shape 2x16"),
    (HW, NET.replace("in_features: 16", "in_features: 0"),
     "layers[0].in_features: got 0; allowed: a number > 0"),
    (HW, NET.replace("in_features: 16", "in_features: -4"),
     "layers[0].in_features: got -4; allowed: a number > 0"),
    (HW.replace("dataflow: ws", "dataflow: rs"), NET,
     "pe_array.dataflow: got 'rs'; allowed: 'ws', 'os' or 'is'"),
    (HW.replace("rows: 4", "rows: 0"), NET, "pe_array.rows: got 0; allowed: a number > 0"),
    (HW.replace("clock_mhz", "clock_mz"), NET, "clock_mz: got 'clock_mz'; allowed: did you mean "
     "'clock_mhz'?"),
    (HW.replace("filter: 4", "filter: 0.01"), NET,
     "sram_kb.filter: got 0.01; allowed: at least 0.0312 KiB, so that each half holds one 4x4 "
     "stationary tile (16 words) [layer 'fc']"),
    (HW, NET.replace("kind: linear", "kind: lineer"),
     "layers[0].kind: got 'lineer'; allowed: one of 'conv2d', 'linear'"),
    (HW, NET.replace("out_features: 8}", "out_features: 8, weight_format: "
                     "{type: block_circulant, block_size: 4}}"),
     "block_circulant: got None; allowed: a block_circulant engine in hardware 'h'"),
    (HW + "dram: {bandwidth_words_per_cycle: 2.5}\n", NET,
     "dram.bandwidth_words_per_cycle: got 2.5; allowed: an integer"),
    ("pe_array: [1, 2\n", NET, "allowed: valid YAML/JSON (parse error at line 2)"),
])
def test_simulate_bad_input(tmp_path, capsys, hw, net, expected):
    line = _bad(["simulate", "--hw", _yaml(tmp_path, "hw.yaml", hw),
                 "--workload", _yaml(tmp_path, "net.yaml", net)], capsys)
    assert line.startswith("a3cs simulate: error: ")
    assert expected in line


def test_estimate_names_the_too_small_value_as_simulate_does(tmp_path, capsys):
    hw = _yaml(tmp_path, "hw.yaml", HW.replace("filter: 4", "filter: 0.01"))
    net = _yaml(tmp_path, "net.yaml", NET)
    for command in ("simulate", "estimate"):
        assert "sram_kb.filter: got 0.01; allowed: at least 0.0312 KiB" in _bad(
            [command, "--hw", hw, "--workload", net], capsys)


def test_simulate_bad_cli_arguments(tmp_path, capsys, repo):
    hw = str(repo / "experiments/hw/ws_32x32.yaml")
    net = str(repo / "experiments/workloads/minatar_reference.yaml")
    assert "--hw: got" in _bad(["simulate", "--hw", str(tmp_path / "missing.yaml"),
                                "--workload", net], capsys)
    assert "argument --engine: invalid choice" in _bad(
        ["simulate", "--hw", hw, "--workload", net, "--engine", "fast"], capsys)
    assert "--trace-layer: got 'conv'; allowed: only together with --trace" in _bad(
        ["simulate", "--hw", hw, "--workload", net, "--trace-layer", "conv"], capsys)
    assert "layer: got 'conv9'; allowed: one of conv, fc, policy, value" in _bad(
        ["simulate", "--hw", hw, "--workload", net, "--trace-layer", "conv9",
         "--trace", str(tmp_path / "t.csv")], capsys)
    assert "the following arguments are required: --workload" in _bad(
        ["simulate", "--hw", hw], capsys)


def test_console_script_exit_status(repo, tmp_path):
    bad = tmp_path / "hw.yaml"
    bad.write_text(HW.replace("dataflow: ws", "dataflow: xs"))
    result = subprocess.run(
        [sys.executable, "-m", "a3cs", "simulate", "--hw", str(bad), "--workload",
         str(repo / "experiments/workloads/mlp_policy.yaml")],
        capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "pe_array.dataflow" in result.stderr
