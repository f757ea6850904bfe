"""A hostile user's inputs to every command: each must end with exit status 2 and one line on
stderr that names the field (a flag, a config key or the file), with no traceback, and must
leave no run behind.

The table crosses every file argument of every command with files that are not what they
should be (binary garbage, non-UTF-8 text, empty, a directory, the wrong top-level type,
non-finite numbers, checkpoints of the wrong shape) and every numeric flag with non-finite,
negative and zero values, and every output path with places nothing can be written.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from a3cs.cli import main

REPO = Path(__file__).resolve().parents[1]
HW = str(REPO / "experiments/hw/ws_32x32.yaml")
WORKLOAD = str(REPO / "experiments/workloads/minatar_reference.yaml")
SPACE = str(REPO / "experiments/hw/zc706_space.yaml")
TEACHER = str(REPO / "a3cs/data/teachers/minatar_breakout.pt")
GOOD_RUN = REPO / "experiments/results/cosearch_breakout/a3cs_s0"

GARBAGE = bytes(range(256)) * 8 + b"\xff\xfe\x00\x81\x9f"
#: Random bytes behind a pickle header: torch's safe unpickler fails on these with an
#: IndexError (not an UnpicklingError) and warns about the protocol first.
RANDOM_PICKLE = b"\x80\x02" + random.Random(2).randbytes(64)


def _bad_files(root: Path) -> dict[str, Path]:
    """One file per kind of wrongness (same names reused with every suffix)."""
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    def make(name: str, data: bytes) -> None:
        path = root / name
        path.write_bytes(data)
        files[name] = path

    for suffix in (".yaml", ".json", ".csv", ".cfg", ".pt"):
        make(f"garbage{suffix}", GARBAGE)
        make(f"pickled{suffix}", RANDOM_PICKLE)
        make(f"latin1{suffix}", "name: caf\xe9\nx: 1\n".encode("latin-1"))
        make(f"empty{suffix}", b"")
    make("list.yaml", b"- 1\n- 2\n")
    make("list.json", b"[1, 2]")
    make("truncated.json", b'{"a": [1, 2')
    directory = root / "a_directory.yaml"
    directory.mkdir(exist_ok=True)
    files["directory"] = directory
    hw_text = Path(HW).read_text()
    for value in (".inf", ".nan", "1e400", "-200.0"):
        make(f"hw_clock_{value}.yaml".replace(".", "_", 1),
             _replace_key(hw_text, "clock_mhz", value).encode())
    torch.save({"format": "a3cs-agent/1"}, root / "fields_missing.pt")
    files["fields_missing.pt"] = root / "fields_missing.pt"
    torch.save({"format": "a3cs-agent/1", "config": {"env_id": 3}, "arch": [],
                "spaces": {}, "model": {}, "global_step": "x"}, root / "fields_wrong.pt")
    files["fields_wrong.pt"] = root / "fields_wrong.pt"
    torch.save([1, 2, 3], root / "not_a_dict.pt")
    files["not_a_dict.pt"] = root / "not_a_dict.pt"
    return files


def _replace_key(text: str, key: str, value: str) -> str:
    lines = []
    found = False
    for line in text.splitlines():
        if line.strip().startswith(f"{key}:"):
            indent = line[: len(line) - len(line.lstrip())]
            line, found = f"{indent}{key}: {value}", True
        lines.append(line)
    assert found, key
    return "\n".join(lines) + "\n"


def _results_runs(root: Path) -> dict[str, Path]:
    """Run directories whose results.json is wrong in one way each."""
    good = json.loads((GOOD_RUN / "results.json").read_text())
    cases = {
        "dict": {"method": "a3cs"},
        "empty_list": [],
        "nan_fps": [{**good[0], "fps": float("nan")}],
        "string_score": [{**good[0], "score_mean": "high"}],
        "missing_field": [{k: v for k, v in good[0].items() if k != "fps"}],
        "extra_field": [{**good[0], "colour": "red"}],
        "negative_latency": [{**good[0], "latency_s": -1.0}],
    }
    runs = {}
    for name, data in cases.items():
        run = root / f"run_{name}"
        run.mkdir(parents=True, exist_ok=True)
        (run / "results.json").write_text(json.dumps(data).replace("NaN", "NaN"))
        runs[name] = run
    garbage = root / "run_garbage"
    garbage.mkdir(exist_ok=True)
    (garbage / "results.json").write_bytes(GARBAGE)
    runs["garbage"] = garbage
    return runs


def _cases(root: Path) -> list[tuple[str, list[str], str]]:
    """(id, argv, what the message must name: ``|``-separated alternatives; the file an
    error comes from counts too)."""
    bad = _bad_files(root / "bad")
    runs = _results_runs(root / "runs")
    out = "{out}"  # a fresh folder per case
    a_file = root / "a_file.txt"
    a_file.write_text("x\n")
    cases: list[tuple[str, list[str], str]] = []

    def add(case_id: str, argv: list[str], needle: str) -> None:
        cases.append((case_id, argv, needle))

    file_kinds = ["garbage", "pickled", "latin1", "empty"]
    # simulate / estimate: --hw and --workload
    for command in ("simulate", "estimate"):
        for kind in file_kinds:
            for suffix in (".yaml", ".json", ".cfg"):
                add(f"{command}-hw-{kind}{suffix}",
                    [command, "--hw", str(bad[f"{kind}{suffix}"]), "--workload", WORKLOAD],
                    "--hw")
            for suffix in (".yaml", ".json", ".csv", ".pt"):
                add(f"{command}-workload-{kind}{suffix}",
                    [command, "--hw", HW, "--workload", str(bad[f"{kind}{suffix}"])],
                    "--workload")
        for name in ("list.yaml", "list.json", "truncated.json"):
            add(f"{command}-hw-{name}", [command, "--hw", str(bad[name]), "--workload",
                                         WORKLOAD], "--hw")
            add(f"{command}-workload-{name}", [command, "--hw", HW, "--workload",
                                               str(bad[name])], "--workload")
        add(f"{command}-hw-directory", [command, "--hw", str(bad["directory"]), "--workload",
                                        WORKLOAD], "--hw")
        for name in ("fields_missing.pt", "fields_wrong.pt", "not_a_dict.pt"):
            add(f"{command}-workload-{name}", [command, "--hw", HW, "--workload",
                                               str(bad[name])], "--workload")
        for value in ("_inf", "_nan", "1e400", "-200_0"):
            name = next(k for k in bad if k.startswith("hw_clock") and value.strip("_") in k)
            add(f"{command}-hw-clock{value}", [command, "--hw", str(bad[name]), "--workload",
                                               WORKLOAD], "clock_mhz")
        add(f"{command}-out-under-a-file", [command, "--hw", HW, "--workload", WORKLOAD,
                                            "--out", str(a_file / "report.txt")], "--out")
        add(f"{command}-out-a-directory", [command, "--hw", HW, "--workload", WORKLOAD,
                                           "--out", str(root)], "--out")
    cfg = root / "non_numeric.cfg"
    cfg.write_text("[general]\nrun_name = x\n[architecture_presets]\nArrayHeight = abc\n"
                   "ArrayWidth = 8\nIfmapSramSzkB = 64\nFilterSramSzkB = 64\n"
                   "OfmapSramSzkB = 64\nDataflow = ws\n")
    add("simulate-cfg-non-numeric", ["simulate", "--hw", str(cfg), "--workload", WORKLOAD],
        "architecture_presets.ArrayHeight")
    add("simulate-trace-under-a-file", ["simulate", "--hw", HW, "--workload", WORKLOAD,
                                        "--trace-layer", "conv", "--trace",
                                        str(a_file / "t.csv")], "--trace")

    # accel-search
    for kind in file_kinds:
        add(f"accel-search-space-{kind}", ["accel-search", "--workload", WORKLOAD, "--space",
                                           str(bad[f"{kind}.yaml"]), "--out", out], "--space")
        add(f"accel-search-workload-{kind}", ["accel-search", "--workload",
                                              str(bad[f"{kind}.yaml"]), "--space", SPACE,
                                              "--out", out], "--workload")
    for flag, values in (("--lr", ("nan", "inf", "1e400", "-0.5", "0")),
                         ("--steps", ("0", "-3")), ("--samples", ("0", "-1"))):
        for value in values:
            add(f"accel-search{flag}={value}", ["accel-search", "--workload", WORKLOAD,
                                                "--space", SPACE, flag, value, "--out", out],
                flag)
    add("accel-search-out-under-a-file", ["accel-search", "--workload", WORKLOAD, "--space",
                                          SPACE, "--out", str(a_file / "dir")], "--out")

    # train
    for kind in file_kinds:
        add(f"train-config-{kind}", ["train", "--config", str(bad[f"{kind}.yaml"]), "--out",
                                     out], "--config")
        add(f"train-arch-{kind}", ["train", "--arch", str(bad[f"{kind}.yaml"]), "--out", out],
            "--arch")
        add(f"train-teacher-{kind}", ["train", "--teacher", str(bad[f"{kind}.pt"]), "--out",
                                      out], "--teacher")
    for name in ("fields_missing.pt", "fields_wrong.pt", "not_a_dict.pt"):
        add(f"train-teacher-{name}", ["train", "--teacher", str(bad[name]), "--out", out],
            "--teacher")
    huge = root / "huge_arch.yaml"  # a mistyped width: 144 TB of weights
    huge.write_text("name: huge\nlayers: [{op: conv3x3, width: 1000000000000}]\n"
                    "head: {width: 128}\n")
    add("train-arch-too-large", ["train", "--env", "MinAtar/Breakout-v1", "--arch", str(huge),
                                 "--out", out], "arch")
    for flag, values in (("--steps", ("0", "-5")), ("--num-envs", ("0", "-2")),
                         ("--threads", ("0",))):
        for value in values:
            add(f"train{flag}={value}", ["train", "--env", "CartPole-v1", flag, value,
                                         "--out", out], flag.lstrip("-").replace("-", "_")
                .replace("steps", "total_steps").replace("threads", "torch_threads"))
    add("train-out-under-a-file", ["train", "--env", "CartPole-v1", "--out",
                                   str(a_file / "run")], "--out")
    resumable = root / "resume_damaged"
    resumable.mkdir(exist_ok=True)
    shutil.copy(bad["fields_missing.pt"], resumable / "checkpoint.pt")
    add("train-resume-fields-missing", ["train", "--out", str(resumable), "--resume"],
        "--resume")
    garbage_resume = root / "resume_garbage"
    garbage_resume.mkdir(exist_ok=True)
    shutil.copy(bad["garbage.pt"], garbage_resume / "checkpoint.pt")
    add("train-resume-garbage", ["train", "--out", str(garbage_resume), "--resume"],
        "--resume")

    # evaluate
    for kind in file_kinds:
        add(f"evaluate-{kind}", ["evaluate", str(bad[f"{kind}.pt"])], "CHECKPOINT")
    for name in ("fields_missing.pt", "fields_wrong.pt", "not_a_dict.pt"):
        add(f"evaluate-{name}", ["evaluate", str(bad[name])], "CHECKPOINT")
    add("evaluate-directory", ["evaluate", str(bad["directory"])], "CHECKPOINT")
    add("evaluate-gif-under-a-file", ["evaluate", TEACHER, "--episodes", "1", "--gif",
                                      str(a_file / "x.gif")], "--gif")

    # search
    for kind in file_kinds:
        add(f"search-config-{kind}", ["search", str(bad[f"{kind}.yaml"]), "--out", out],
            "CONFIG")
        add(f"search-space-{kind}", ["search", "--space", str(bad[f"{kind}.yaml"]), "--out",
                                     out], "space")
        add(f"search-target-{kind}", ["search", "--target",
                                      f"accelerator:{bad[f'{kind}.yaml']}", "--out", out],
            "target")
        add(f"search-teacher-{kind}", ["search", "--teacher", str(bad[f"{kind}.pt"]),
                                       "--out", out], "teacher")
    for name in ("fields_missing.pt", "fields_wrong.pt"):
        add(f"search-teacher-{name}", ["search", "--teacher", str(bad[name]), "--out", out],
            "teacher")
    for flag, values in (("--lam", ("inf", "nan", "1e400", "-1")),
                         ("--target-fps", ("0", "-5", "inf", "nan")),
                         ("--target-speedup", ("0", "nan")),
                         ("--search-steps", ("0", "-1")), ("--eval-episodes", ("0",))):
        field = {"--lam": "cost.lam", "--target-fps": "cost.target_fps",
                 "--target-speedup": "cost.target_speedup",
                 "--search-steps": "budget.search_steps",
                 "--eval-episodes": "budget.eval_episodes"}[flag]
        for value in values:
            add(f"search{flag}={value}", ["search", flag, value, "--out", out],
                f"{field}|{flag}")
    add("search-out-under-a-file", ["search", "--out", str(a_file / "run")], "--out")
    # a flag's latency target replaces the default config's other one (not a conflict)
    add("search-target-fps-with-the-default", ["search", "--target-fps", "1000", "--out",
                                               str(a_file / "run")], "--out")
    # every seed, flag or config key: numpy and gymnasium take 0 to 2**32 - 1, and a run
    # derives more seeds from its own
    seeded = {"train": ["train", "--env", "CartPole-v1", "--out", out],
              "search": ["search", "--out", out],
              "evaluate": ["evaluate", TEACHER, "--episodes", "1"],
              "accel-search": ["accel-search", "--workload", WORKLOAD, "--space", SPACE,
                               "--out", out],
              "calibrate-cpu": ["calibrate-cpu", "--out", str(root / "profile.json")]}
    for command, argv in seeded.items():
        for value in ("-1", "2147483648", "1.5"):
            add(f"{command}--seed={value}", [*argv, "--seed", value], "--seed")
    add("evaluate--policy-seed=-1", [*seeded["evaluate"], "--policy-seed", "-1"],
        "--policy-seed")
    for value in ("-1", "4294967296"):
        config = root / f"seed_{value}.yaml"
        config.write_text(f"env_id: CartPole-v1\nseed: {value}\n")
        add(f"train-config-seed={value}", ["train", "--config", str(config), "--out", out],
            "seed")
        add(f"search-config-seed={value}", ["search", str(config), "--out", out], "seed")
    damaged_runs = {"state-garbage": (GARBAGE, b"method: a3cs\n"),
                    "config-garbage": (b"{}", b"method: [1, 2\n"),
                    "config-invalid": (b"[]", b"method: nope\nbudget: 3\n")}
    for name, (state, config) in damaged_runs.items():
        damaged = root / f"search_{name}"
        damaged.mkdir(exist_ok=True)
        (damaged / "state.json").write_bytes(state)
        (damaged / "config.yaml").write_bytes(config)
        add(f"search-resume-{name}", ["search", "--out", str(damaged), "--resume"], "--resume")

    # plot
    for name, run in runs.items():
        add(f"plot-{name}", ["plot", str(GOOD_RUN), str(run), "--out", str(root / "p")],
            str(run))
    add("plot-out-under-a-file", ["plot", str(GOOD_RUN), "--out", str(a_file / "p")], "--out")
    add("plot-out-a-directory", ["plot", str(GOOD_RUN), "--out", str(root)], "--out")

    # calibrate-cpu --refit
    for kind in file_kinds:
        profile = root / f"cal_{kind}" / "p.json"
        profile.parent.mkdir(exist_ok=True)
        shutil.copy(bad[f"{kind}.json"], profile.with_name("p_measurements.json"))
        add(f"calibrate-cpu-refit-{kind}", ["calibrate-cpu", "--refit", "--out", str(profile)],
            "measurements")
    measured = json.loads((REPO / "experiments/results/cpu_host_profile_measurements.json")
                          .read_text())
    damages = {"rounds_strings": {"rounds": ["x"] * len(measured["rounds"])},
               "median_strings": {"rounds": [{**r, "median_s": ["bad"] * len(r["median_s"])}
                                             for r in measured["rounds"]]},
               "negative_canary": {"rounds": [{**r, "canary_s": [-1.0] * len(r["canary_s"])}
                                              for r in measured["rounds"]]},
               "short_round": {"rounds": [{**r, "median_s": r["median_s"][:3]}
                                          for r in measured["rounds"]]},
               "calls_text": {"calls": "many"}}
    for name, change in damages.items():
        profile = root / f"cal_{name}" / "p.json"
        profile.parent.mkdir(exist_ok=True)
        profile.with_name("p_measurements.json").write_text(json.dumps({**measured, **change}))
        add(f"calibrate-cpu-refit-{name}", ["calibrate-cpu", "--refit", "--out", str(profile)],
            "--refit")
    for flag in ("--per-family", "--held-out", "--rounds", "--samples", "--threads"):
        add(f"calibrate-cpu{flag}=0", ["calibrate-cpu", flag, "0", "--out",
                                       str(root / "cal.json")], flag)
    add("calibrate-cpu-out-under-a-file", ["calibrate-cpu", "--out", str(a_file / "p.json")],
        "--out")
    return cases


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _ids() -> list[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as root:
        return [case_id for case_id, _, _ in _cases(Path(root))]


CASE_IDS = _ids()
_BUILT: dict[Path, dict[str, tuple[list[str], str]]] = {}


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_every_bad_input_is_one_line_and_exit_2(case_id: str, fuzz_root: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    if fuzz_root not in _BUILT:  # the files are made once per worker
        _BUILT[fuzz_root] = {cid: (argv, needle) for cid, argv, needle in _cases(fuzz_root)}
    argv, needle = _BUILT[fuzz_root][case_id]
    out = fuzz_root / f"out_{case_id}"
    argv = [arg.replace("{out}", str(out)) for arg in argv]
    code = main(argv)
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, (code, err[-500:])
    assert "Traceback" not in captured.err and len(err.splitlines()) == 1, err[-500:]
    # the field is named: the flag or key, or the file (and its own key) it came from
    files = [arg for arg in argv if Path(arg).exists() and arg in err]
    assert any(part in err for part in needle.split("|")) or files, err
    assert not out.exists() or not any(out.iterdir()), "a run was started"
