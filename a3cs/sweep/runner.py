"""Running a sweep's trials with Ray Tune, killed and resumed without loss.

Each trial is one :func:`a3cs.search.run.run_search` into ``OUT/<trial name>/``, run by Ray
Tune as a function trainable with the sweep's resources.  Tune's own state lives in
``OUT/.tune/``; a trial's progress lives in its run directory (``state.json`` and the stage
checkpoints), so a trial restarted after a kill continues where its run stopped
(``--resume``: :meth:`ray.tune.Tuner.restore`, finished trials are not run again, failed ones
are retried).

Without ``address`` the command starts a one-node Ray bound to 127.0.0.1 (dashboard off, no
usage reporting) and stops it at the end; with ``address`` it joins that cluster, whose nodes
must see ``OUT`` at the same path (a shared file system).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from a3cs.sweep.config import SweepConfig, Trial
from a3cs_common.errors import ConfigError
from a3cs_common.io import atomic_write_text

TUNE_DIR = ".tune"
EXPERIMENT = "sweep"
TRIALS_FILE = "trials.json"


@dataclass(frozen=True)
class TrialOutcome:
    """How one trial ended."""

    name: str
    status: str  # "done", "error", or "unfinished" (interrupted or never started)
    error: str | None
    wall_time_s: float


class SweepStopped(RuntimeError):
    """Ray Tune stopped the sweep itself (its message, one line); the trials' run directories
    and Tune's state are kept, so ``--resume`` continues."""


def run_trial(spec: dict[str, Any]) -> None:
    """The Ray Tune trainable: one search run, resumed when its run directory holds one."""
    from ray import tune

    from a3cs.results import read_results
    from a3cs.search.config import SearchConfig
    from a3cs.search.run import run_search

    trial = spec["trial"]
    # Tune starts a trial in its own folder; the run records paths relative to the sweep's
    # working directory (a repository's root), as a search started there would.
    if "cwd" in trial:  # sweeps started before it was recorded run where Tune put them
        os.chdir(trial["cwd"])
    run_dir = Path(trial["out"]) / trial["name"]
    config = SearchConfig.model_validate(trial["config"])
    started = time.perf_counter()
    if not (run_dir / "results.json").is_file():
        run_search(config, run_dir, resume=(run_dir / "state.json").is_file(), progress=False)
    (row,) = read_results(run_dir)
    tune.report({"score_mean": row.score_mean, "score_std": row.score_std, "fps": row.fps,
                 "latency_s": row.latency_s, "run_dir": str(run_dir),
                 "trial_wall_time_s": time.perf_counter() - started})


def prepare_ray(address: str | None) -> None:
    """Settings Ray reads once, at import: call before Ray is imported.

    A local Ray (no ``address``) and a cluster on this machine's loopback listen on 127.0.0.1
    only: Ray replaces a loopback node address by the machine's reachable one and binds its
    servers to it (or to every interface), unless told that the cluster is single-machine,
    which its ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` does (on any platform).  To join a head
    started with ``ray start --head``: since Ray 2.5x it requires an authentication token
    (``~/.ray/auth_token``), which ``ray.init(address=...)`` sends only in token mode.

    Raises:
        ConfigError: ``address`` is not HOST:PORT, or nothing listens there.
    """
    import ipaddress
    import socket

    if address is None:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("--address", address, "HOST:PORT of a Ray head (ray start --head "
                          "--port PORT), e.g. 127.0.0.1:6379")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as error:
        raise ConfigError("--address", address, "the address of a running Ray head, started "
                          f"with `ray start --head --port {port}` (connecting failed: "
                          f"{error.strerror or error})") from None
    with contextlib.suppress(ValueError):
        if host == "localhost" or ipaddress.ip_address(host).is_loopback:
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if "RAY_AUTH_MODE" in os.environ:
        return  # the user's choice
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray/auth_token"))
    if os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def _ray_init(address: str | None, sweep: SweepConfig) -> None:
    import ray

    env = {"OMP_NUM_THREADS": str(sweep.torch_threads), "MKL_NUM_THREADS":
           str(sweep.torch_threads), "RAY_USAGE_STATS_ENABLED": "0"}
    if address is None:
        # The local cluster's workers inherit this process's environment: set here, the
        # variables cost nothing a worker, where a runtime_env is set up for each one.
        os.environ.update(env)
        # Ray's memory monitor kills a trial's worker when the machine nears full memory,
        # whoever holds it, and Tune (2.5x) then stops the whole sweep ("Caught unexpected
        # exception").  Off, the kernel's OOM killer picks the largest process; if that is a
        # trial, Tune reports it failed and the sweep goes on (--resume retries it).
        os.environ["RAY_memory_monitor_refresh_ms"] = "0"  # noqa: SIM112 (Ray spells it so)
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
                 _node_ip_address="127.0.0.1", configure_logging=False, log_to_driver=False)
    else:
        try:
            ray.init(address=address, include_dashboard=False, configure_logging=False,
                     log_to_driver=False, runtime_env={"env_vars": env})
        except (ConnectionError, ray.exceptions.RayError) as error:
            raise ConfigError("--address", address, "a Ray cluster this machine may join: "
                              "with token authentication (Ray's default for ray start "
                              "--head) the head's ~/.ray/auth_token copied here or "
                              f"RAY_AUTH_TOKEN set ({_one_line(error)})") from None


def check_resources(sweep: SweepConfig, address: str | None) -> None:
    """Refuse per-trial resources that no node can give, before any trial starts.

    Raises:
        ConfigError: more CPUs than the machine (cluster) has, or a GPU it lacks.
    """
    if address is not None:
        import ray

        total = ray.cluster_resources()
        cpus, gpus = float(total.get("CPU", 0)), float(total.get("GPU", 0))
        where = f"the cluster at {address}"
    else:
        cpus, gpus = float(os.cpu_count() or 1), 0.0
        if sweep.resources.gpu > 0:  # torch's import is a second of the sweep's start
            import torch

            gpus = float(torch.cuda.device_count())
        where = "this machine"
    if sweep.resources.cpu > cpus:
        raise ConfigError("resources.cpu", sweep.resources.cpu, f"at most {cpus:g} (the CPUs "
                          f"of {where})")
    if sweep.resources.gpu > gpus:
        raise ConfigError("resources.gpu", sweep.resources.gpu, f"at most {gpus:g} (the GPUs "
                          f"of {where})")


def run_sweep(sweep: SweepConfig, trials: list[Trial], out: Path, *, address: str | None,
              resume: bool, progress: bool,
              on_start: Callable[[], None] | None = None) -> list[TrialOutcome]:
    """Run (or resume) every trial; return how each ended (also in ``OUT/trials.json``).
    ``on_start`` runs once the checks have passed, before Ray starts.

    Raises:
        ConfigError: ``resume`` without a sweep in ``out``, or a fresh sweep into a folder
            that holds one; resources no node can give.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    tune_path = (out / TUNE_DIR).resolve()
    # Without Tune's state (a sweep copied from another machine: .tune/ is not committed) a
    # resumed sweep starts Tune afresh; the trials still skip or continue their own runs.
    restore = resume and (tune_path / EXPERIMENT).is_dir()
    if not resume and (tune_path / EXPERIMENT).exists():
        raise ConfigError("--out", str(out), "a new sweep directory (this one holds a sweep: "
                          "pass --resume to continue it)")
    if address is None:
        check_resources(sweep, None)
    import ray

    out.mkdir(parents=True, exist_ok=True)
    if on_start is not None:
        on_start()
    # Ray's start mostly waits for its processes: Tune's import (about half a second) runs
    # meanwhile.
    tune_import = threading.Thread(target=importlib.import_module, args=("ray.tune",),
                                   daemon=True)
    tune_import.start()
    _ray_init(address, sweep)
    tune_import.join()
    from ray import tune

    try:
        if address is not None:
            check_resources(sweep, address)
        trainable = tune.with_resources(run_trial, {"cpu": sweep.resources.cpu,
                                                    "gpu": sweep.resources.gpu})
        bar = _Progress(out, [t.name for t in trials], progress)
        run_config = tune.RunConfig(
            name=EXPERIMENT, storage_path=str(tune_path), verbose=0,
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False))
        if restore:
            tuner = tune.Tuner.restore(str(tune_path / EXPERIMENT), trainable=trainable,
                                       resume_unfinished=True, resume_errored=False,
                                       restart_errored=True)
        else:
            specs = [{"name": t.name, "out": str(out.resolve()), "cwd": str(Path.cwd()),
                      "config": t.config.model_dump(mode="json")} for t in trials]
            tuner = tune.Tuner(trainable, param_space={"trial": tune.grid_search(specs)},
                               tune_config=tune.TuneConfig(
                                   # A finished trial's worker runs the next one: no new
                                   # process importing torch per trial.  A run holds no
                                   # global state (seeded generators, scoped thread counts).
                                   reuse_actors=True,
                                   max_concurrent_trials=sweep.max_concurrent),
                               run_config=run_config)
        try:
            grid = tuner.fit()
        except RuntimeError as error:  # Tune's controller itself failed, not a trial
            raise SweepStopped(str(error).strip().splitlines()[0][:300]) from None
        finally:
            bar.close()
    finally:
        ray.shutdown()
    # A trial is done when its run directory holds results: Tune reports a trial stopped by
    # an interrupt (Ctrl-C) without an error, and one never started not at all.
    by_name = {}
    for result in grid:
        spec = (result.config or {}).get("trial")
        if spec is None:  # a trial a stop kept from starting: Tune has not even its config
            continue
        error = None if result.error is None else _one_line(result.error)
        wall = float((result.metrics or {}).get("trial_wall_time_s", 0.0))
        by_name[spec["name"]] = (error, wall)
    outcomes = []
    for trial in trials:
        error, wall = by_name.get(trial.name, (None, 0.0))
        status = ("error" if error else "done" if (out / trial.name / "results.json").is_file()
                  else "unfinished")
        outcomes.append(TrialOutcome(trial.name, status, error, wall))
    outcomes.sort(key=lambda o: o.name)
    atomic_write_text(out / TRIALS_FILE, json.dumps([o.__dict__ for o in outcomes], indent=1)
                      + "\n")
    return outcomes


def _one_line(error: BaseException) -> str:
    """The root cause of a trial's failure, on one line."""
    cause: BaseException = error
    while getattr(cause, "cause", None) is not None:
        cause = cause.cause  # type: ignore[attr-defined]
    text = str(cause).strip().splitlines()
    last = next((line for line in reversed(text) if line.strip()), type(cause).__name__)
    return last.strip()[:300]


class _Progress:
    """A tqdm bar over the trials with results (rate and ETA), polled from the run
    directories in a thread (Tune pickles its callbacks into its state; a bar does not
    pickle)."""

    def __init__(self, out: Path, names: list[str], enabled: bool) -> None:
        import threading

        from tqdm import tqdm

        self._paths = [out / name / "results.json" for name in names]
        self._bar = tqdm(total=len(names), unit="trial", desc="sweep", disable=not enabled,
                         file=sys.stderr)
        self._done = self._count()
        self._bar.update(self._done)
        self._bar.reset(total=len(names))  # rate and ETA count this session's trials only
        self._bar.update(self._done)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _count(self) -> int:
        return sum(path.is_file() for path in self._paths)

    def _poll(self) -> None:
        while not self._stop.wait(2.0):
            done = self._count()
            self._bar.update(done - self._done)
            self._done = done

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        done = self._count()
        self._bar.update(done - self._done)
        self._bar.close()
