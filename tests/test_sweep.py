"""`a3cs sweep`: the sweep file and its trials, bad input before Ray starts, and the smoke
sweep on Ray Tune killed with SIGKILL mid-way and resumed to the uninterrupted result."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from a3cs.cli import main
from a3cs.results import read_results
from a3cs.sweep.config import expand, load_sweep

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "experiments/sweeps/smoke.yaml"
TINY = REPO / "experiments/sweeps/tiny_search.yaml"


def _sweep(tmp_path: Path, name: str = "sweep.yaml", **fields: object) -> str:
    data = {"base": str(TINY), "grid": {"method": ["a3cs", "hand_designed"], "seed": [0, 1]},
            **fields}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _quick_smoke(tmp_path: Path) -> Path:
    """The smoke sweep at the budget it had before it was sized for the overhead benchmark
    (seconds per trial): for the tests of what a sweep does when it is interrupted, whose
    trials only need to exist.  The smoke sweep itself is run by the kill-and-resume test."""
    base = yaml.safe_load(TINY.read_text())
    base["budget"] = {"warmup_steps": 512, "search_steps": 1024, "proxy_steps": 512,
                      "retrain_steps": 2048, "eval_episodes": 2}
    (tmp_path / "quick_search.yaml").write_text(yaml.safe_dump(base))
    smoke = yaml.safe_load(SMOKE.read_text())
    (tmp_path / "quick_smoke.yaml").write_text(yaml.safe_dump({**smoke,
                                                             "base": "quick_search.yaml"}))
    return tmp_path / "quick_smoke.yaml"


def test_trials_are_every_grid_point_named_after_what_varies(tmp_path: Path) -> None:
    path = _sweep(tmp_path, grid={"env_id": ["MinAtar/Breakout-v1", "MinAtar/Asterix-v1"],
                                  "cost.lam": [0.1, 0.5], "seed": [3]},
                  variants={"hand": {"method": "hand_designed"},
                            "evo_distill": {"method": "evolution", "proxy.kind": "distill",
                                            "budget.trials": 2}},
                  torch_threads=2)
    sweep, base = load_sweep(path)
    trials = expand(sweep, base, path)
    assert len(trials) == 2 * 2 * 2
    names = {t.name for t in trials}
    assert "breakout_hand_lam=0.1_s3" in names and "asterix_evo_distill_lam=0.5_s3" in names
    evo = next(t for t in trials if t.name == "asterix_evo_distill_lam=0.5_s3")
    assert (evo.config.method, evo.config.proxy.kind, evo.config.budget.trials) == (
        "evolution", "distill", 2)
    assert evo.config.cost.lam == 0.5 and evo.config.env_id == "MinAtar/Asterix-v1"
    assert evo.config.label == "evo_distill_lam=0.5" and evo.config.torch_threads == 2
    assert evo.config.budget.retrain_steps == 32768  # from the base config
    plain = expand(*load_sweep(str(SMOKE)), str(SMOKE))
    assert [t.name for t in plain] == ["a3cs_s0", "a3cs_s1", "hand_designed_s0",
                                       "hand_designed_s1"]
    assert all(t.config.label is None for t in plain)


def _bad(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_bad_sweeps_are_one_line_errors_before_ray_starts(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"

    def bad(**fields: object) -> str:
        return _bad(["sweep", _sweep(tmp_path, **fields), "--out", str(out)], capsys)

    assert "(trial cost.lamm=0.1): cost.lamm: got 'lamm'; allowed: did you mean 'lam'?" in bad(
        grid={"cost.lamm": [0.1]})
    assert "method: got 'darts'" in bad(grid={"method": ["darts"]})
    assert "env_id: got 'MinAtar/Pong-v1'" in bad(grid={"env_id": ["MinAtar/Pong-v1"]})
    assert "grid.seed: got []; allowed: a non-empty list" in bad(grid={"seed": []})
    assert "grid: got {}; allowed: at least one field" in bad(grid={})
    assert "resources.cpu: got 1000.0; allowed: at most" in bad(resources={"cpu": 1000})
    assert "resources.gpu: got" in bad(resources={"gpu": 8})
    assert "grid: got 'a3cs_s0'; allowed: trials with distinct names" in bad(
        grid={"method": ["a3cs", "a3cs"], "seed": [0]})
    assert "base: got" in bad(base="nope.yaml")
    for name in ("a/b", "..", ""):  # a variant's name begins its run directories' names
        assert f"variants: got {name!r}; allowed: names of letters" in bad(
            grid={"seed": [0]}, variants={name: {"method": "random"}})
    assert "did you mean 'grid'" in _bad(["sweep", _write(tmp_path, "gird: {}\n"), "--out",
                                          str(out)], capsys)
    garbage = tmp_path / "garbage.yaml"
    garbage.write_bytes(b"\x00\xff\xfe binary")
    assert "SWEEP: got" in _bad(["sweep", str(garbage), "--out", str(out)], capsys)
    assert "--resume: got" in _bad(["sweep", str(SMOKE), "--out", str(out), "--resume"],
                                   capsys)
    assert not out.exists() or not any(out.iterdir())


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "raw.yaml"
    path.write_text(text)
    return str(path)


def _session(leader: int) -> set[int]:
    """Processes of the session ``leader`` leads (Ray's workers rename their command line,
    but stay in the session of the ``ray start`` that forked them)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[3]) == leader:
                    found.add(int(entry.name))
    return found


def _run_in_session(command: list[str], sessions: list[int]) -> subprocess.CompletedProcess:
    """``command`` run to its end in a new session, whose id is added to ``sessions``."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    sessions.append(process.pid)
    stdout, stderr = process.communicate(timeout=900)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _listening(pids: set[int]) -> set[str]:
    """The addresses ``pids`` listen on (TCP)."""
    import psutil

    found = set()
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            for conn in psutil.Process(pid).net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    found.add(conn.laddr.ip)
    return found


LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


def _rows(out: Path) -> dict[str, tuple]:
    return {p.parent.name: (r.score_mean, r.score_std, r.fps, r.latency_s, r.flops,
                            (p.parent / "arch.yaml").read_text())
            for p in sorted(out.glob("*/results.json")) for r in read_results(p.parent)}


@pytest.mark.slow
def test_smoke_sweep_killed_and_resumed_equals_the_uninterrupted_one(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "a3cs", "sweep", str(SMOKE), "--quiet"]
    # each sweep in a session of its own: its Ray processes are found (and cleaned up) by
    # session, without touching other Ray jobs on the machine
    sessions: list[int] = []
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    try:
        done = _run_in_session([*command, "--out", str(straight)], sessions)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "4 of 4 trials done" in done.stdout and (straight / "summary.md").is_file()

        process = subprocess.Popen([*command, "--out", str(killed)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        sessions.append(process.pid)
        deadline = time.time() + 600
        while not list(killed.glob("*/results.json")) and time.time() < deadline:
            assert process.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.2)
        # the sweep's own Ray listens on the loopback only
        assert _listening(_session(process.pid)) <= LOOPBACK
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        finished = {p.parent.name: p.stat().st_mtime for p in killed.glob("*/results.json")}
        assert 0 < len(finished) < 4

        resumed = _run_in_session([*command, "--out", str(killed), "--resume"], sessions)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert _rows(killed) == _rows(straight) and len(_rows(straight)) == 4
        for name, mtime in finished.items():  # finished trials were not run again
            assert (killed / name / "results.json").stat().st_mtime == mtime
        outcomes = json.loads((killed / "trials.json").read_text())
        assert [o["status"] for o in outcomes] == ["done"] * 4
        summary = (killed / "summary.md").read_text()
        assert "| MinAtar/Breakout-v1 | a3cs | 2 |" in summary
        assert (killed / "pareto_breakout.png").is_file()
        (killed / "summary.md").unlink()
        assert main(["plot", str(killed)]) == 0  # a sweep directory: its summary again
        assert (killed / "summary.md").read_text() == summary
    finally:  # the killed driver's Ray processes, and any the sweeps left
        left = set().union(*(_session(leader) for leader in sessions)) if sessions else set()
        deadline = time.time() + 60
        while left and time.time() < deadline:
            time.sleep(1)
            left = set().union(*(_session(leader) for leader in sessions))
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_interrupted_sweep_says_which_trials_are_unfinished(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) stops a sweep gracefully: the trials it did not finish are reported
    unfinished, not done, the command exits 1, and --resume completes them."""
    command = [sys.executable, "-m", "a3cs", "sweep", str(_quick_smoke(tmp_path)), "--quiet",
               "--out", str(tmp_path / "sweep")]
    sessions: list[int] = []
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, start_new_session=True)
        sessions.append(process.pid)
        deadline = time.time() + 600
        while not list((tmp_path / "sweep").glob("*/results.json")) and time.time() < deadline:
            assert process.poll() is None, "the sweep ended before it could be interrupted"
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=300)
        outcomes = json.loads((tmp_path / "sweep" / "trials.json").read_text())
        done = [o["name"] for o in outcomes if o["status"] == "done"]
        assert all((tmp_path / "sweep" / name / "results.json").is_file() for name in done)
        unfinished = [o for o in outcomes if o["status"] == "unfinished"]
        assert len(outcomes) == 4 and unfinished and process.returncode == 1
        assert f"{len(done)} of 4 trials done; {len(unfinished)} unfinished" in stdout
        resumed = _run_in_session([*command, "--resume"], sessions)
        assert resumed.returncode == 0 and "4 of 4 trials done" in resumed.stdout
    finally:
        left = set().union(*(_session(leader) for leader in sessions)) if sessions else set()
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


@pytest.mark.slow
def test_a_trial_whose_worker_is_killed_fails_alone_and_resume_retries_it(
        tmp_path: Path) -> None:
    """The kernel's OOM killer (or anyone) SIGKILLs a running trial's worker: that trial is
    reported failed, the other trials finish, the command exits 1, and ``--resume`` retries
    it.  Ray's own memory monitor, which would kill a trial for memory another process holds
    and make Tune stop the whole sweep, is off in the sweep's local Ray."""
    out = tmp_path / "sweep"
    command = [sys.executable, "-m", "a3cs", "sweep", str(_quick_smoke(tmp_path)), "--quiet",
               "--out", str(out)]
    sessions: list[int] = []
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, start_new_session=True)
        sessions.append(process.pid)
        deadline, victim = time.time() + 600, None
        while victim is None and time.time() < deadline:
            assert process.poll() is None, "the sweep ended before a trial could be killed"
            running = [pid for pid in _session(process.pid)
                       if _cmdline(pid).startswith("ray::ImplicitFunc.train")]
            victim = running[0] if running and list(out.glob("*/state.json")) else None
            time.sleep(0.2)
        assert victim is not None
        raylets = [pid for pid in _session(process.pid) if "raylet/raylet" in _cmdline(pid)]
        environ = (Path("/proc") / str(raylets[0]) / "environ").read_bytes().split(b"\0")
        assert b"RAY_memory_monitor_refresh_ms=0" in environ
        os.kill(victim, signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=600)
        outcomes = json.loads((out / "trials.json").read_text())
        assert sorted(o["status"] for o in outcomes) == ["done", "done", "done", "error"]
        (failed,) = [o for o in outcomes if o["status"] == "error"]
        assert process.returncode == 1 and f"trial {failed['name']} failed: " in stderr
        assert "3 of 4 trials done; 1 failed" in stdout
        resumed = _run_in_session([*command, "--resume"], sessions)
        assert resumed.returncode == 0 and "4 of 4 trials done" in resumed.stdout
    finally:
        left = set().union(*(_session(leader) for leader in sessions)) if sessions else set()
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_sweep_joins_a_cluster_started_with_ray_start(tmp_path: Path) -> None:
    """``ray start --head`` on this machine's loopback (token authentication on, Ray's
    default), then ``a3cs sweep --address``: the sweep runs on that cluster and leaves it
    running; stopping the head leaves no process of it behind."""
    import socket
    import tempfile

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Ray's socket paths live under its temp dir and must stay short (AF_UNIX: 107 bytes)
    temp_dir = tempfile.mkdtemp(prefix="a3cs-ray-", dir="/tmp")
    # a single-machine head: Ray binds it to the loopback only when told so (a3cs.sweep.runner)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_AUTH_MODE", None)
    head = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--port",
         str(port), "--node-ip-address", "127.0.0.1", "--include-dashboard", "false",
         "--num-cpus", "2", "--temp-dir", temp_dir, "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            assert head.poll() is None, "ray start --head exited"
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.5)
        assert _listening(_session(head.pid)) <= LOOPBACK
        out = tmp_path / "joined"
        done = subprocess.run([sys.executable, "-m", "a3cs", "sweep", str(_quick_smoke(tmp_path)),
                               "--out",
                               str(out), "--address", f"127.0.0.1:{port}", "--quiet"],
                              # the command itself keeps a loopback address local
                              env={k: v for k, v in env.items()
                                   if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"},
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "4 of 4 trials done" in done.stdout and len(_rows(out)) == 4
        assert head.poll() is None  # a cluster the sweep joined is not the sweep's to stop
    finally:
        head.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=60)
        deadline = time.time() + 60
        while _session(head.pid) and time.time() < deadline:
            time.sleep(1)
        leftover = _session(head.pid)
        for pid in leftover:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert not leftover, "processes of the stopped head remain"


def test_a_recorded_sweep_reads_with_todays_defaults() -> None:
    """A search field added after a sweep was recorded (with its default) does not make the
    same sweep look different to --resume; a changed value still does."""
    import copy

    from a3cs.commands.sweep import _with_todays_defaults
    from a3cs.search.config import SearchConfig

    config = SearchConfig().model_dump(mode="json")
    older = copy.deepcopy(config)
    del older["cost"]["tolerance"], older["supernet"]["accelerator_research_every"]
    assert _with_todays_defaults([{"name": "t", "config": older}]) == [
        {"name": "t", "config": config}]
    changed = {**config, "seed": config["seed"] + 1}
    assert _with_todays_defaults([{"name": "t", "config": changed}]) != [
        {"name": "t", "config": config}]


@pytest.mark.parametrize("record", [b"5", b"[1, 2]", b'{"a": 1}', b"[{", b"\x00\xff garbage"])
def test_a_damaged_sweep_record_is_a_one_line_error(tmp_path: Path, record: bytes,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sweep.json").write_bytes(record)
    assert main(["sweep", str(SMOKE), "--out", str(tmp_path), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "--resume: got" in err and "sweep.json a3cs sweep writes" in err


def test_a_trials_config_error_survives_rays_copy_and_pickle() -> None:
    # Ray copies and pickles a trial's exception to report it; the trial's one-line error
    # must reach trials.json, not a TypeError raised while copying it.
    import copy
    import pickle

    from a3cs_common.errors import ConfigError

    error = ConfigError("--resume", "/runs/x/checkpoint.pt", "a run written by you",
                        source="sweep.yaml")
    for clone in (copy.copy(error), pickle.loads(pickle.dumps(error))):
        assert isinstance(clone, ConfigError)
        assert str(clone) == str(error)
        assert (clone.field, clone.value, clone.allowed, clone.source) == (
            error.field, error.value, error.allowed, error.source)
