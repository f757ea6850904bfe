"""The engine interface and the choice of engine for a layer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from a3cs_common.errors import ConfigError
from hw_sim.hardware import Hardware
from hw_sim.schedule import OpCounts, StepRun
from hw_sim.workload import Conv2d, Linear

LayerT = Conv2d | Linear


class Engine(Protocol):
    """What the simulator needs from a compute engine."""

    name: str

    def plan(self, layer: LayerT, hw: Hardware, weights_on_chip: bool = False) -> list[StepRun]:
        """The layer's schedule of steps (run-length encoded).  With ``weights_on_chip`` the
        layer's weights are already in the filter buffer and never fetched."""
        ...

    def step_cost(self, work: Any, hw: Hardware) -> tuple[int, OpCounts]:
        """Closed form: compute cycles and action counts of one step."""
        ...

    def cycle_activity(self, work: Any, hw: Hardware, repetition: int) -> Iterator[tuple[int, ...]]:
        """Per cycle: the actions of each cycle of one step, as a tuple in
        :data:`hw_sim.schedule.COUNT_FIELDS` order.  ``repetition`` is the index of the step
        within its run."""
        ...

    def peak_ops_per_cycle(self, hw: Hardware) -> int:
        """Useful operations the engine can do per cycle (for utilization)."""
        ...

    def useful_ops(self, counts: OpCounts) -> int:
        """Useful operations among ``counts`` (MACs, or complex MACs)."""
        ...


def too_small(operand: str, hw: Hardware, need_words: int, what: str) -> ConfigError:
    """Error for an SRAM that cannot hold one tile (double-buffered: a half must hold it)."""
    have = getattr(hw.sram_kb, operand)
    need_kib = 2 * need_words * hw.word_bits / 8 / 1024
    return ConfigError(
        f"sram_kb.{operand}", have,
        f"at least {need_kib:.3g} KiB, so that each half holds {what} ({need_words} words)",
    )


def stream_chunks(total: int, chunk: int) -> list[tuple[int, int, bool, bool]]:
    """Split ``total`` stream units into chunks of at most ``chunk`` units.

    Returns ``(size, count, is_first, is_last)`` runs in stream order: the first chunk, the
    identical middle chunks, the last chunk (one run when everything fits in one chunk).
    """
    if chunk >= total:
        return [(total, 1, True, True)]
    full, rest = divmod(total, chunk)
    last = rest if rest else chunk
    middles = full - 1 if rest else full - 2
    runs = [(chunk, 1, True, False)]
    if middles > 0:
        runs.append((chunk, middles, False, False))
    runs.append((last, 1, False, True))
    return runs


def blocks(extent: int, size: int) -> list[tuple[int, int]]:
    """Tile ``extent`` by ``size``: ``(block_size, count)`` for the full blocks and the rest."""
    full, rest = divmod(extent, size)
    out = [(size, full)] if full else []
    if rest:
        out.append((rest, 1))
    return out
