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

from a3cs_common.errors import ConfigError
from hw_sim.engines.base import Engine, LayerT
from hw_sim.engines.block_circulant import BLOCK_CIRCULANT
from hw_sim.engines.n_m import N_M
from hw_sim.engines.one_by_n import ONE_BY_N
from hw_sim.engines.systolic import SYSTOLIC
from hw_sim.hardware import Hardware

__all__ = ["ENGINES", "Engine", "engine_for"]

#: Engine name (a format's ``engine``) -> engine.  Every engine but the systolic array needs
#: the hardware section of the same name.
ENGINES: dict[str, Engine] = {engine.name: engine for engine in (SYSTOLIC, BLOCK_CIRCULANT,
                                                                 ONE_BY_N, N_M)}


def engine_for(layer: LayerT, hw: Hardware) -> Engine:
    """The engine that runs ``layer``'s weight format on ``hw``.

    Raises:
        ConfigError: the hardware has no engine for the layer's weight format.
    """
    fmt = layer.weight_format
    name = fmt.engine
    if name != SYSTOLIC.name and not getattr(hw, name):
        present = getattr(hw, name)
        wanted = "true" if isinstance(present, bool) else f"a {name} engine"
        raise ConfigError(name, present, f"{wanted} in hardware '{hw.name}' (layer "
                          f"'{layer.name}' is {fmt.type})")
    return ENGINES[name]
