"""A non-editable install (a wheel in a fresh virtual environment) runs the default search from
an empty directory: everything the defaults need is package data."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# The top-level packages the wheel ships, read from pyproject so that a new package is copied too.
PACKAGES = tuple(pattern.rstrip("*") for pattern in tomllib.loads(
    (REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"])


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_runs_the_default_search_from_an_empty_directory(
        tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: the build leaves build/ and *.egg-info behind
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in PACKAGES:
        shutil.copytree(REPO / package, source / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(wheels), str(source)], check=True, capture_output=True)
    (wheel,) = wheels.glob("a3cs-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True)
    # The dependencies come from this environment, as a plain path: the .pth files there
    # (among them this checkout's editable install) are not processed, so only the wheel
    # provides a3cs.
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig."
                                   "get_paths()['purelib'])"], check=True, capture_output=True,
                                  text=True).stdout.strip())
    (purelib / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    empty = tmp_path / "empty"
    empty.mkdir()
    where = subprocess.run([str(python), "-c", "import a3cs; print(a3cs.__file__)"], cwd=empty,
                           check=True, capture_output=True, text=True).stdout
    assert where.startswith(str(purelib)), where
    run = subprocess.run([str(venv / "bin" / "a3cs"), "search", "--out", "run", "--quiet",
                          "--set", "budget.trials=2", "--set", "budget.samples_per_trial=4",
                          "--set", "proxy.distill_steps=10", "--set", "proxy.train_states=256",
                          "--set", "proxy.held_out_states=64",
                          "--retrain-steps", "1024", "--eval-episodes", "1"],
                         cwd=empty, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "results: run/results.json" in run.stdout
    state = json.loads((empty / "run" / "state.json").read_text())
    # the packaged teacher and space, recorded by their path in the package's data folder
    assert state["teacher"]["path"] == "teachers/minatar_breakout.pt"
    assert (purelib / "a3cs" / "data" / state["teacher"]["path"]).is_file()
    retrain = yaml.safe_load((empty / "run" / "retrain" / "config.yaml").read_text())
    assert retrain["teacher"] == "teachers/minatar_breakout.pt"
    (row,) = json.loads((empty / "run" / "results.json").read_text())
    assert row["target"] == "accelerator:zc706_cosearch_space.yaml" and row["fps"] > 0
    assert row["device"] in ("cpu", "cuda")
