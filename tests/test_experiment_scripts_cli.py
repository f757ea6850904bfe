"""The command-line scripts in experiments/: every bad argument, input file or checkpoint ends
before any work with exit status 2 and one line on stderr that names the field (the flag or
positional), with no traceback, and leaves nothing behind.

Each script's ``main(argv)`` runs in-process; the bad files are made here, in a temporary
folder.  The arguments of the scripts that would set up or run long work on input that got
through (a SCALE-Sim venv, a training) are chosen so that they fail fast even then.
"""

from __future__ import annotations

import functools
import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from a3cs.rl.checkpoint import FORMAT

REPO = Path(__file__).resolve().parents[1]
TEACHER = str(REPO / "a3cs/data/teachers/minatar_breakout.pt")
RANKING_CONFIG = str(REPO / "experiments/configs/ranking_breakout.yaml")
GARBAGE = random.Random(0).randbytes(300)
#: A cache.cfg with one line of each setting experiments/cacti_sram.py rewrites.
CACHE_CFG = ("-size (bytes) 32768\n-block size (bytes) 64\n-associativity 2\n"
             "-technology (u) 0.032\n-output/input bus width 512\n-cache type \"cache\"\n")

# (id, script, argv, what the message must name); {bad} is the folder of bad files, {out} a
# path no case may create.
CASES: list[tuple[str, str, list[str], str]] = [
    ("export-garbage", "export_teacher", ["{bad}/garbage.pt", "{out}/t.pt"], "checkpoint"),
    ("export-missing", "export_teacher", ["{bad}/missing.pt", "{out}/t.pt"], "checkpoint"),
    ("export-fields-missing", "export_teacher", ["{bad}/fields_missing.pt", "{out}/t.pt"],
     "checkpoint"),
    ("export-out-is-a-directory", "export_teacher", [TEACHER, "{bad}/a_directory"],
     "error: out:"),
    ("export-no-arguments", "export_teacher", [], "checkpoint, out"),
    ("distill-teacher-garbage", "distill_curve", ["--teacher", "{bad}/garbage.pt", "--out",
                                                  "{out}"], "--teacher"),
    ("distill-teacher-of-another-game", "distill_curve",
     ["--teacher", TEACHER, "--env", "MinAtar/Asterix-v1", "--out", "{out}"], "--teacher"),
    ("distill-env-unknown", "distill_curve", ["--env", "Bogus-v0", "--out", "{out}"], "--env"),
    ("distill-student-arch-list", "distill_curve",
     ["--student-arch", "{bad}/list.yaml", "--out", "{out}"], "--student-arch"),
    ("distill-out-is-a-file", "distill_curve", ["--out", "{bad}/a_file"], "--out"),
    ("distill-jobs-0", "distill_curve", ["--jobs", "0", "--out", "{out}"], "--jobs"),
    ("distill-seeds-negative", "distill_curve", ["--seeds", "-1", "--out", "{out}"],
     "--seeds"),
    ("distill-eval-episodes-nan", "distill_curve", ["--eval-episodes", "nan", "--out", "{out}"],
     "--eval-episodes"),
    ("cacti-missing", "cacti_sram", ["--cacti", "{bad}/missing"], "--cacti"),
    ("cacti-no-cache-cfg", "cacti_sram", ["--cacti", "{bad}/cacti_no_cfg"], "--cacti"),
    ("cacti-garbage-cache-cfg", "cacti_sram", ["--cacti", "{bad}/cacti_garbage_cfg"],
     "--cacti"),
    ("cacti-foreign-cache-cfg", "cacti_sram", ["--cacti", "{bad}/cacti_foreign_cfg"],
     "cache.cfg"),
    ("cacti-out-is-a-directory", "cacti_sram",
     ["--cacti", "{bad}/cacti_ok", "--out", "{bad}/a_directory"], "--out"),
    ("cacti-no-arguments", "cacti_sram", [], "--cacti"),
    ("cpu-sparsity-rounds-0", "cpu_sparsity", ["--rounds", "0", "--out", "{out}"], "--rounds"),
    ("cpu-sparsity-samples-text", "cpu_sparsity", ["--samples", "x", "--out", "{out}"],
     "--samples"),
    ("cpu-sparsity-out-is-a-file", "cpu_sparsity",
     ["--out", "{bad}/a_file", "--rounds", "1", "--samples", "1"], "--out"),
    ("joint-no-runs", "joint_hardware_check", ["{bad}/a_directory", "--out", "{out}/j"],
     "folders"),
    ("joint-garbage-config", "joint_hardware_check", ["{bad}/runs_garbage_config", "--out",
                                                      "{out}/j"], "CONFIG"),
    ("joint-out-under-a-file", "joint_hardware_check",
     ["{bad}/runs_garbage_config", "--out", "{bad}/a_file/j"], "--out"),
    ("joint-no-arguments", "joint_hardware_check", [], "folders"),
    ("proxy-run-missing", "proxy_agreement", ["{bad}/missing"], "CONFIG"),
    ("proxy-arch-garbage", "proxy_agreement", ["{bad}/a_directory", "--arch",
                                               "{bad}/garbage.json"], "--arch"),
    ("proxy-arch-list", "proxy_agreement", ["{bad}/a_directory", "--arch", "{bad}/list.json"],
     "--arch"),
    ("ranking-unknown-action", "ranking_study", ["bogus"], "action"),
    ("ranking-archs-0", "ranking_study", ["run", "--archs", "0", "--out", "{out}"], "--archs"),
    ("ranking-jobs-negative", "ranking_study", ["run", "--jobs", "-1", "--out", "{out}"],
     "--jobs"),
    ("ranking-proxy-pruning-without-proxy", "ranking_study",
     ["run", "--proxy-pruning", "start", "--out", "{out}"], "--proxy-pruning"),
    ("ranking-config-garbage", "ranking_study",
     ["run", "--config", "{bad}/garbage.yaml", "--out", "{out}"], "CONFIG"),
    ("ranking-config-list", "ranking_study",
     ["run", "--config", "{bad}/list.yaml", "--out", "{out}"], "CONFIG"),
    ("ranking-out-is-a-file", "ranking_study",
     ["run", "--config", RANKING_CONFIG, "--out", "{bad}/a_file"], "--out"),
    ("ranking-report-out-missing", "ranking_study", ["report", "--out", "{out}"], "--out"),
    ("retrain-jobs-0", "retrain_variants",
     ["{bad}/a_directory", "--variant", "no_distill", "--jobs", "0"], "--jobs"),
    ("retrain-threads-0", "retrain_variants",
     ["{bad}/a_directory", "--variant", "no_distill", "--threads", "0"], "--threads"),
    ("retrain-variant-unknown", "retrain_variants", ["{bad}/a_directory", "--variant", "bogus"],
     "--variant"),
    ("retrain-sweep-missing", "retrain_variants", ["{bad}/missing", "--variant", "no_distill"],
     "sweep_dir"),
    ("retrain-sweep-garbage-config", "retrain_variants",
     ["{bad}/sweep_garbage_config", "--variant", "no_distill"], "sweep_dir"),
    ("rl-scores-jobs-0", "rl_scores", ["run", "--jobs", "0", "--out", "{out}"], "--jobs"),
    ("rl-scores-seeds-negative", "rl_scores",
     ["run", "--seeds", "-1", "--envs", "CartPole-v1", "--out", "{out}"], "--seeds"),
    ("rl-scores-envs-unknown", "rl_scores", ["run", "--envs", "Bogus", "--out", "{out}"],
     "--envs"),
    ("rl-scores-out-is-a-file", "rl_scores",
     ["run", "--envs", "CartPole-v1", "--seeds", "0", "--out", "{bad}/a_file"], "--out"),
    ("rl-scores-report-out-missing", "rl_scores", ["report", "--out", "{out}"], "--out"),
    ("rl-scores-report-out-empty", "rl_scores", ["report", "--out", "{bad}/a_directory"],
     "--out"),
    ("tune-steps-0", "tune_batched_entry", ["--steps", "0", "--out", "{out}/t.jsonl"],
     "--steps"),
    ("tune-seeds-negative", "tune_batched_entry", ["--seeds", "-1", "--out", "{out}/t.jsonl"],
     "--seeds"),
    ("tune-settings-list", "tune_batched_entry", ["--settings", "[1]", "--out",
                                                  "{out}/t.jsonl"], "--settings"),
    ("tune-settings-bad-field", "tune_batched_entry",
     ["--settings", '{"num_envs": -3}', "--out", "{out}/t.jsonl"], "--settings"),
    ("tune-out-garbage", "tune_batched_entry", ["--out", "{bad}/garbage.jsonl"], "--out"),
    ("tune-out-wrong-lines", "tune_batched_entry", ["--out", "{bad}/wrong.jsonl"], "--out"),
    ("tune-out-is-a-directory", "tune_batched_entry", ["--out", "{bad}/a_directory"], "--out"),
    ("model-samples-2", "validate_model", ["--samples", "2", "--results", "{out}"],
     "--samples"),
    ("model-samples-text", "validate_model", ["--samples", "x", "--results", "{out}"],
     "--samples"),
    ("model-seed-negative", "validate_model",
     ["--seed", "-1", "--samples", "3", "--results", "{out}", "--figures", "{out}"], "--seed"),
    ("model-results-is-a-file", "validate_model",
     ["--samples", "3", "--results", "{bad}/a_file", "--figures", "{out}"], "--results"),
    ("model-figures-is-a-file", "validate_model",
     ["--samples", "3", "--results", "{out}", "--figures", "{bad}/a_file"], "--figures"),
    # --venv is a file: an argument that got through would end at the venv, not install one
    ("scalesim-timeout-nan", "validate_scalesim",
     ["--scalesim-timeout", "nan", "--venv", "{bad}/a_file", "--results", "{out}"],
     "--scalesim-timeout"),
    ("scalesim-topology-unknown", "validate_scalesim",
     ["--topologies", "bogus", "--venv", "{bad}/a_file", "--results", "{out}"], "--topologies"),
    ("scalesim-results-is-a-file", "validate_scalesim",
     ["--venv", "{bad}/a_file", "--results", "{bad}/a_file"], "--results"),
    ("scalesim-regression-data-is-a-directory", "validate_scalesim",
     ["--regression-data", "{bad}/a_directory", "--venv", "{bad}/a_file", "--results", "{out}"],
     "--regression-data"),
    ("scalesim-doc-garbage", "validate_scalesim",
     ["--n-m-only", "--doc", "{bad}/garbage.yaml", "--venv", "{bad}/a_file", "--results",
      "{out}"], "--doc"),
    ("extremes-timeout-nan", "verify_scalesim_trace_extremes",
     ["--timeout", "nan", "--venv", "{bad}/missing"], "--timeout"),
    ("extremes-bandwidth-0", "verify_scalesim_trace_extremes",
     ["--bandwidths", "0", "--venv", "{bad}/missing"], "--bandwidths"),
    ("extremes-array-0-rows", "verify_scalesim_trace_extremes",
     ["--arrays", "0x8:16", "--venv", "{bad}/missing"], "--arrays"),
    ("extremes-cache-is-a-file", "verify_scalesim_trace_extremes",
     ["--cache", "{bad}/a_file", "--venv", "{bad}/missing"], "--cache"),
    ("extremes-csv-is-a-directory", "verify_scalesim_trace_extremes",
     ["--csv", "{bad}/a_directory", "--venv", "{bad}/missing"], "--csv"),
]


@functools.cache
def _script(name: str) -> ModuleType:
    """experiments/<name>.py, loaded once as a module."""
    spec = importlib.util.spec_from_file_location(name, REPO / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def _exit_status(name: str, argv: list[str]) -> int:
    """What ``python experiments/<name>.py ARGV`` exits with (argparse exits, main returns)."""
    try:
        return _script(name).main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of inputs that are each wrong in one way."""
    root = tmp_path_factory.mktemp("bad")
    files = {
        "garbage.pt": GARBAGE, "garbage.yaml": GARBAGE, "garbage.json": GARBAGE,
        "garbage.jsonl": GARBAGE, "list.yaml": b"- 1\n- 2\n", "list.json": b"[1, 2]",
        "a_file": b"x\n", "wrong.jsonl": b'{"settings": {}}\n',
        "cacti_no_cfg/cacti": b"", "cacti_garbage_cfg/cacti": b"",
        "cacti_garbage_cfg/cache.cfg": GARBAGE, "cacti_foreign_cfg/cacti": b"",
        "cacti_foreign_cfg/cache.cfg": b"-size (bytes) 32768\n", "cacti_ok/cacti": b"",
        "cacti_ok/cache.cfg": CACHE_CFG.encode(),
        "runs_garbage_config/run/results.json": b"[]",
        "runs_garbage_config/run/config.yaml": GARBAGE,
        "sweep_garbage_config/run/retrain/config.yaml": GARBAGE,
        "sweep_garbage_config/run/eval.json": b"{}",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "a_directory").mkdir()
    torch.save({"format": FORMAT}, root / "fields_missing.pt")
    torch.save({"format": FORMAT, "config": {"env_id": 3}, "arch": [], "spaces": {},
                "model": {}, "global_step": "x"}, root / "fields_wrong.pt")
    return root


@pytest.mark.parametrize(("script", "argv", "field"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_a_bad_input_is_one_line_and_exit_2(script: str, argv: list[str], field: str,
                                            bad: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # a default output folder that is relative lands here
    out = tmp_path / "out"
    argv = [arg.replace("{bad}", str(bad)).replace("{out}", str(out)) for arg in argv]
    code = _exit_status(script, argv)
    err = capsys.readouterr().err
    assert code == 2, (code, err[-500:])
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err[-500:]
    assert field in err, err
    assert not out.exists(), "an output was written"


def test_export_teacher_keeps_the_file_it_would_replace(bad: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    """A damaged checkpoint is refused (its file and wrong field named) before the teacher at
    ``out`` is replaced."""
    out = tmp_path / "teacher.pt"
    out.write_bytes(b"the teacher in use")
    damaged = bad / "fields_wrong.pt"
    assert _exit_status("export_teacher", [str(damaged), str(out)]) == 2
    assert f"{damaged}: env_id: got 3" in capsys.readouterr().err
    assert out.read_bytes() == b"the teacher in use"
