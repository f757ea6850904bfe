"""Command-line parsing shared by every entry point (``a3cs``, ``python -m hw_sim...``, the
scripts in ``experiments/``).

Every bad argument ends with one line on stderr that names the flag, the value and what is
allowed, and exit status 2: :class:`OneLineParser` for what argparse checks (with the typed
``type=`` helpers below), :func:`script_main` for the :class:`ConfigError` a script raises
while checking its files before any work.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from a3cs_common.errors import ConfigError


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage dump) with exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def finite_float(text: str) -> float:
    """argparse ``type`` of every float flag: a finite number (``inf``, ``nan`` and
    ``1e400`` are refused while parsing, with a one-line message naming the flag)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: a finite number")
    return value


def positive_float(text: str) -> float:
    """argparse ``type`` of a float flag that must be above zero (a timeout, a rate)."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: a finite number > 0")
    return value


def int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse ``type`` of an integer flag that must be ``minimum`` or more (a count: 1, a
    seed: 0), refused while parsing rather than deep in the work (a pool of 0 workers, a
    negative seed in a child process)."""

    def parse(text: str) -> int:
        refused = argparse.ArgumentTypeError(f"got {text!r}; allowed: an integer >= {minimum}")
        try:
            value = int(text)
        except ValueError:
            raise refused from None
        if value < minimum:
            raise refused
        return value

    return parse


def seed_int(text: str) -> int:
    """argparse ``type`` of a seed flag: an integer from 0 to
    :data:`a3cs_common.schema.SEED_MAX` (what numpy and gymnasium take, with room for the
    seeds a run derives from it)."""
    from a3cs_common.schema import SEED_MAX

    refused = argparse.ArgumentTypeError(f"got {text!r}; allowed: an integer from 0 to "
                                         f"{SEED_MAX}")
    try:
        value = int(text)
    except ValueError:
        raise refused from None
    if not 0 <= value <= SEED_MAX:
        raise refused
    return value


def script_main(main: Callable[[list[str] | None], int | None]) -> Callable[[list[str] | None],
                                                                          int]:
    """Decorator of a script's ``main(argv)``: a :class:`ConfigError` it raises becomes one line
    on stderr, ``<script>: error: <message>``, and exit status 2 (returned), as ``a3cs`` does
    for its commands; the status ``main`` returns is passed on (``None``: 0)."""
    script = Path(main.__code__.co_filename).name

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        try:
            return int(main(argv) or 0)
        except ConfigError as exc:
            print(f"{script}: error: {exc}", file=sys.stderr)
            return 2

    return run
