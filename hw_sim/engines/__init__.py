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

from hw_sim.engines.base import Engine, engine_for

__all__ = ["Engine", "engine_for"]
