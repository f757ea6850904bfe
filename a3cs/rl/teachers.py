"""The teachers shipped in the package (``a3cs/data/teachers/manifest.yaml``).

Each entry names the checkpoint of one environment's teacher and how it was made and scored
(score, std, steps, seed, command), so a user can re-measure it with ``a3cs evaluate``.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import Field, NonNegativeFloat, PositiveInt

from a3cs_common.io import load_mapping
from a3cs_common.schema import FrozenModel, validate

TEACHERS_DIR = Path(__file__).resolve().parent.parent / "data" / "teachers"
MANIFEST = TEACHERS_DIR / "manifest.yaml"


class ShippedTeacher(FrozenModel):
    """One manifest entry."""

    file: str = Field(description="checkpoint file name, in a3cs/data/teachers/")
    score_mean: float = Field(description="mean test return over `episodes` episodes")
    score_std: NonNegativeFloat = Field(description="standard deviation of those returns")
    episodes: PositiveInt
    steps: PositiveInt = Field(description="environment steps it was trained for")
    seed: int = Field(description="training seed")
    command: str = Field(description="the command that made it")

    @property
    def path(self) -> Path:
        """The checkpoint's location in the installed package."""
        return TEACHERS_DIR / self.file


class Manifest(FrozenModel):
    """``manifest.yaml``: a version and one teacher per environment id."""

    version: PositiveInt
    teachers: dict[str, ShippedTeacher]


@functools.cache
def manifest() -> Manifest:
    """The validated manifest.

    Raises:
        ConfigError: the manifest is malformed.
    """
    return validate(Manifest, load_mapping(str(MANIFEST), field="teachers manifest"),
                    source=str(MANIFEST))


def shipped_teacher(env_id: str) -> ShippedTeacher | None:
    """The shipped teacher of ``env_id``, or None when the package has none."""
    return manifest().teachers.get(env_id)
