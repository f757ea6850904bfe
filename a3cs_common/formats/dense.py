"""Dense weights: every weight stored and multiplied, on the systolic array."""

from __future__ import annotations

from typing import Literal

from a3cs_common.formats.base import FormatBase


class Dense(FormatBase):
    """Every weight stored and multiplied."""

    type: Literal["dense"] = "dense"
