"""MinAtar's five games as batched tensors on the training device (``--env-backend
batched``); see :mod:`a3cs.rl.batched.core`."""

from __future__ import annotations

import torch

from a3cs.rl.batched.asterix import Asterix
from a3cs.rl.batched.breakout import Breakout
from a3cs.rl.batched.core import BatchedMinAtar
from a3cs.rl.batched.freeway import Freeway
from a3cs.rl.batched.seaquest import Seaquest
from a3cs.rl.batched.space_invaders import SpaceInvaders
from a3cs_common.errors import ConfigError

GAMES: dict[str, type[BatchedMinAtar]] = {
    "Asterix": Asterix, "Breakout": Breakout, "Freeway": Freeway, "Seaquest": Seaquest,
    "SpaceInvaders": SpaceInvaders}


def has_batched(env_id: str) -> bool:
    """Whether ``env_id`` has a batched implementation (``MinAtar/<Game>-v1`` or ``-v0``)."""
    game = env_id.removeprefix("MinAtar/").rsplit("-", 1)[0]
    return env_id.startswith("MinAtar/") and game in GAMES and env_id.endswith(("-v0", "-v1"))


def check_batched(env_id: str) -> None:
    """Raises ConfigError unless ``env_id`` has a batched implementation."""
    if not has_batched(env_id):
        raise ConfigError("env_backend", "batched", "the default backend for "
                          f"{env_id} (a batched one exists for MinAtar/"
                          f"{{{','.join(GAMES)}}}-v1 and -v0)")


def make_batched_env(env_id: str, num_envs: int, seed: int,
                     device: str | torch.device = "cpu") -> BatchedMinAtar:
    """``num_envs`` copies of a MinAtar game (``MinAtar/<Game>-v1`` or ``-v0``) stepped as
    tensors on ``device``, reset with ``seed``.

    Raises:
        ConfigError: an env id with no batched implementation.
    """
    check_batched(env_id)
    game = env_id.removeprefix("MinAtar/").rsplit("-", 1)[0]
    return GAMES[game](env_id, num_envs, seed, torch.device(device))
