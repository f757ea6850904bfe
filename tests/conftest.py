"""Shared test fixtures."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")
# Runs are signed with a per-user key (a3cs.rl.checkpoint): the tests use their own, not the
# key in the home directory (inherited by the commands the tests start).
os.environ["A3CS_RUN_KEY_FILE"] = str(Path(tempfile.mkdtemp(prefix="a3cs-key-")) / "run_key")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo() -> Path:
    """The repository root."""
    return REPO
