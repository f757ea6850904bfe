"""Checkpoints: everything a run needs to continue exactly, and an agent to evaluate.

A checkpoint (``RUN_DIR/checkpoint.pt``, written atomically) holds the resolved config and
architecture, the spaces, the model and optimizer states, the collector's state (current
observations, running episodes), the RNG states (python, numpy, torch, the run's generator),
the environments' exact state (pickled, so running episodes continue), the update count and
the metrics so far.  Everything but the environments loads with ``torch.load(weights_only=
True)``; the pickled environments are unpickled only when resuming, and only when this user's
key signed them (:func:`unpickle_envs`).
"""

from __future__ import annotations

import contextlib
import hmac
import io
import os
import pickle
import random
import secrets
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from a3cs.rl.config import TrainConfig
from a3cs.rl.networks import ActorCritic, build_agent, describe_action_space
from a3cs_common.errors import ConfigError
from a3cs_common.io import atomic_write_bytes
from a3cs_common.schema import validate
from distill.teacher import Teacher
from nas.arch import Arch

FORMAT = "a3cs-agent/1"
#: What every agent checkpoint holds (a training checkpoint holds more: a3cs.rl.loop).
AGENT_KEYS = ("config", "arch", "spaces", "model", "global_step")
CHECKPOINT_NAME = "checkpoint.pt"


def spaces_record(obs_space: gym.spaces.Box, action_space: gym.Space) -> dict[str, Any]:
    """What a checkpoint stores of the spaces (enough to rebuild the network)."""
    record: dict[str, Any] = {"obs_shape": [int(d) for d in obs_space.shape],
                              "obs_dtype": str(obs_space.dtype),
                              "action_space": describe_action_space(action_space)}
    if isinstance(action_space, gym.spaces.Discrete):
        record["action_n"] = int(action_space.n)
    else:
        record["action_shape"] = [int(d) for d in action_space.shape]
        record["action_low"] = [float(x) for x in np.asarray(action_space.low).ravel()]
        record["action_high"] = [float(x) for x in np.asarray(action_space.high).ravel()]
    return record


def spaces_from_record(record: dict[str, Any]) -> tuple[gym.spaces.Box, gym.Space]:
    """The observation and action spaces a checkpoint was trained on."""
    obs_space = gym.spaces.Box(0.0, 1.0, tuple(record["obs_shape"]),
                               np.dtype(record["obs_dtype"]))
    action_space: gym.Space
    if "action_n" in record:
        action_space = gym.spaces.Discrete(record["action_n"])
    else:
        shape = tuple(record["action_shape"])
        action_space = gym.spaces.Box(np.array(record["action_low"], dtype=np.float32),
                                      np.array(record["action_high"], dtype=np.float32), shape,
                                      np.float32)
    return obs_space, action_space


def rng_states(generator: torch.Generator) -> dict[str, Any]:
    """python, numpy, torch (global) and the run's generator, as tensors and tuples."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(),
            "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
            "torch": torch.get_rng_state(), "generator": generator.get_state()}


def restore_rng_states(states: dict[str, Any], generator: torch.Generator) -> None:
    """Inverse of :func:`rng_states`."""
    python = states["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    generator.set_state(states["generator"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write a checkpoint dict atomically (``torch.save`` to memory, then rename)."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def read_checkpoint(path: str | Path, *, field: str = "CHECKPOINT") -> dict[str, Any]:
    """Load a checkpoint dict (safe loader: tensors and plain values only).

    A run directory stands for its ``checkpoint.pt``.

    Raises:
        ConfigError: the file is missing, not a torch file, or not an a3cs agent checkpoint.
    """
    file = Path(path)
    if file.is_dir():
        file = file / CHECKPOINT_NAME
    if not file.is_file():
        raise ConfigError(field, str(path), "an a3cs checkpoint (.pt) or a run directory "
                          "holding checkpoint.pt")
    try:
        # Unpickling arbitrary bytes fails in many ways (IndexError, KeyError, ... besides
        # UnpicklingError), and torch warns about odd protocol bytes before failing: any of
        # them means the file is not a checkpoint, said in one line.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = torch.load(file, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise ConfigError(field, str(path), f"a readable checkpoint file (cannot read it: "
                          f"{exc.strerror or type(exc).__name__})") from None
    except Exception:  # any of them: see above
        raise ConfigError(field, str(path), "a checkpoint written by a3cs train (this file "
                          "is not a torch file of tensors and plain values)") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(field, str(path), f"a checkpoint written by a3cs train (format "
                          f"{FORMAT})")
    return data


def require_keys(data: dict[str, Any], keys: tuple[str, ...], path: str | Path, *,
                 field: str = "CHECKPOINT", expected: str = "a checkpoint written by a3cs train",
                 advice: str = "") -> None:
    """Raise a one-line :class:`ConfigError` naming the entries of ``keys`` that ``data`` (a
    checkpoint read by :func:`read_checkpoint`) lacks: ``expected (this one lacks ...)``
    followed by ``advice``."""
    missing = [key for key in keys if key not in data]
    if missing:
        raise ConfigError(field, str(path), f"{expected} (this one lacks "
                          f"{', '.join(missing)}){advice}")


@dataclass
class LoadedAgent:
    """A trained agent read from a checkpoint."""

    model: ActorCritic
    config: TrainConfig
    arch: Arch
    obs_space: gym.spaces.Box
    action_space: gym.Space
    global_step: int
    path: str


def agent_from_checkpoint(data: dict[str, Any], path: str, *, field: str = "CHECKPOINT",
                          device: str | torch.device = "cpu") -> LoadedAgent:
    """Rebuild the network of a checkpoint dict and load its weights.

    Raises:
        ConfigError: the stored architecture or weights do not fit together.
    """
    require_keys(data, AGENT_KEYS, path, field=field)
    config = validate(TrainConfig, data["config"], source=path)
    arch = validate(Arch, data["arch"], source=path)
    try:
        obs_space, action_space = spaces_from_record(data["spaces"])
        global_step = int(data["global_step"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(field, path, "an a3cs agent checkpoint (its spaces or step count "
                          f"are damaged: {type(exc).__name__})") from None
    if not isinstance(data["model"], dict):
        raise ConfigError(field, path, "an a3cs agent checkpoint (its weights are damaged)")
    model = build_agent(arch, obs_space, action_space, normalize_obs=bool(config.normalize_obs))
    try:
        model.load_state_dict(data["model"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise ConfigError(field, path, f"weights of the stored architecture {arch.name!r} "
                          f"({textwrap.shorten(first, 80, placeholder=' ...')})") from None
    return LoadedAgent(model=model.to(device), config=config, arch=arch, obs_space=obs_space,
                       action_space=action_space, global_step=global_step,
                       path=path)


def load_agent(path: str | Path, *, field: str = "CHECKPOINT",
               device: str | torch.device = "cpu") -> LoadedAgent:
    """Read a checkpoint (or a run directory) and rebuild its agent.

    Raises:
        ConfigError: as :func:`read_checkpoint` and :func:`agent_from_checkpoint`.
    """
    return agent_from_checkpoint(read_checkpoint(path, field=field), str(path), field=field,
                                 device=device)


def export_agent(checkpoint: str | Path, out: str | Path) -> LoadedAgent:
    """Write the agent of a training checkpoint alone (network, config, spaces, steps: no
    optimizer, environments or metrics; small enough to commit) to ``out``; it loads as an
    agent and as a teacher.

    Raises:
        ConfigError: as :func:`read_checkpoint` and :func:`agent_from_checkpoint`.
    """
    data = read_checkpoint(checkpoint)
    save_checkpoint(out, {key: data[key] for key in AGENT_KEYS})
    return load_agent(out)


def load_teacher(path: str | Path, *, device: str | torch.device = "cpu",
                 field: str = "--teacher") -> Teacher:
    """A frozen :class:`~distill.teacher.Teacher` from a checkpoint (or run directory).

    Raises:
        ConfigError: the checkpoint cannot be read.
    """
    agent = load_agent(path, field=field, device=device)
    return Teacher(agent.model, kind=agent.model.kind, obs_shape=agent.model.obs_shape,
                   action_space=describe_action_space(agent.action_space), source=str(path))


#: The environments' state in a checkpoint is a pickle (MinAtar, ALE and MuJoCo keep game
#: state and RNGs in Python objects), and unpickling can run code.  So each checkpoint signs
#: its pickle with a secret key of the user who wrote it (HMAC-SHA256), and resuming refuses a
#: pickle that this key did not sign: a run directory from someone else (shared evidence, a
#: colleague's run) can be evaluated, plotted and taught from, but not resumed.
KEY_FILE_ENV = "A3CS_RUN_KEY_FILE"


def run_key_path() -> Path:
    """Where this user's signing key lives: ``$A3CS_RUN_KEY_FILE``, else
    ``~/.config/a3cs/run_key``."""
    override = os.environ.get(KEY_FILE_ENV)
    return Path(override) if override else Path.home() / ".config" / "a3cs" / "run_key"


def _run_key() -> bytes:
    """This user's signing key, created (32 random bytes, mode 0600) on first use."""
    path = run_key_path()
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(secrets.token_bytes(32))
    return path.read_bytes()


def pickle_envs(envs: gym.vector.VectorEnv) -> dict[str, Any]:
    """The environments' exact state (running episodes, RNGs) as a signed pickle:
    ``{"envs": bytes, "envs_hmac": hex digest}``, entries of a checkpoint."""
    blob = pickle.dumps(envs)
    return {"envs": blob, "envs_hmac": hmac.new(_run_key(), blob, "sha256").hexdigest()}


def unpickle_envs(saved: dict[str, Any], *, source: str, field: str = "--resume",
                  trust: bool = False) -> Any:
    """Inverse of :func:`pickle_envs`, only after the signature checks out (or, with
    ``trust``, when the user has said the run is theirs: runs written before signing).

    Raises:
        ConfigError: the checkpoint's environment state is unsigned, or signed by another
            key (another user or machine): it is not unpickled.
    """
    blob, signature = saved.get("envs"), saved.get("envs_hmac")
    if not isinstance(blob, bytes):
        raise ConfigError(field, source, "a checkpoint holding its environments' state")
    if not trust and (not isinstance(signature, str) or not hmac.compare_digest(
            hmac.new(_run_key(), blob, "sha256").hexdigest(), signature)):
        raise ConfigError(field, source, "a run written by you on this machine (its "
                          "environment state is a pickle, which can run code, and this one is "
                          f"not signed by your key {run_key_path()}): resume it where it was "
                          "written, start a new run, or, for your own run written before "
                          "runs were signed, add --trust-run")
    return pickle.loads(blob)
