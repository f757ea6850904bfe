"""Compute engines: how each weight format is mapped onto the hardware and how long it takes.

Each engine provides three functions over the same step descriptions:

* ``plan(layer, hw)``: the layer's schedule (:class:`hw_sim.schedule.StepRun` list): which
  data each step loads and stores, and a ``work`` object describing its computation.
* ``step_cost(work, hw)``: closed-form compute cycles and action counts of one step (used by
  the fast event engine).
* ``cycle_activity(work, hw, repetition)``: the same step advanced one cycle at a time,
  yielding the actions of each cycle (used by the reference stepper).
"""

from __future__ import annotations

from hw_sim.engines.base import Engine, LayerT
from hw_sim.engines.block_circulant import BLOCK_CIRCULANT
from hw_sim.engines.one_by_n import ONE_BY_N
from hw_sim.engines.systolic import SYSTOLIC
from hw_sim.errors import ConfigError
from hw_sim.hardware import Hardware
from hw_sim.workload import BlockCirculant, OneByN

__all__ = ["Engine", "engine_for"]


def engine_for(layer: LayerT, hw: Hardware) -> Engine:
    """The engine that runs ``layer``'s weight format on ``hw``.

    Raises:
        ConfigError: the hardware has no engine for the layer's weight format.
    """
    fmt = layer.weight_format
    if isinstance(fmt, BlockCirculant):
        if hw.block_circulant is None:
            raise ConfigError(
                "block_circulant", None,
                f"a block_circulant engine in hardware '{hw.name}' "
                f"(layer '{layer.name}' is block_circulant)",
            )
        return BLOCK_CIRCULANT
    if isinstance(fmt, OneByN):
        if hw.one_by_n is None:
            raise ConfigError(
                "one_by_n", None,
                f"a one_by_n engine in hardware '{hw.name}' (layer '{layer.name}' is one_by_n)",
            )
        return ONE_BY_N
    return SYSTOLIC
