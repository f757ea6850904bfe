"""The target a search config names: ``cpu:PROFILE`` or ``accelerator:SPACE.yaml``.

Above both kinds of target, so neither imports the other.
"""

from __future__ import annotations

from a3cs.search.accelerator_target import AcceleratorTarget
from a3cs.search.targets import CpuTarget, Target


def make_target(kind: str, value: str, seed: int = 0) -> Target:
    """The target named by a config's ``target`` field.

    Raises:
        ConfigError: unknown kind, a missing file or an invalid profile/space.
    """
    if kind == "cpu":
        return CpuTarget(value)
    return AcceleratorTarget(value, seed=seed)
