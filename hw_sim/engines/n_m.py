"""N:M layers on the systolic array that skips their zero weights (layer-wise N:M).

The pattern of an N:M layer is the same for every output channel, so the zero weights are
whole rows of the ``[K, N]`` weight matrix, and the im2col rows they would multiply are never
fetched: the layer runs as the dense GEMM ``[M, K'] x [K', N]`` with ``K'`` the weights kept
per output channel (``floor(K/m) n + min(n, K mod m)``).  This is how SCALE-Sim v3 runs
layer-wise N:M sparsity (``SparsitySupport: true``, ``OptimizedMapping: false``) in every
dataflow; its compute cycles are those of the dense formula with ``K'`` for ``K``.

The index metadata (each kept weight's position in its group) is fetched with the first
weights of the layer; SCALE-Sim reports its size but does not move it.
"""

from __future__ import annotations

from hw_sim.engines.base import LayerT
from hw_sim.engines.systolic import SystolicEngine
from hw_sim.hardware import Hardware
from hw_sim.schedule import StepRun


class NMEngine(SystolicEngine):
    """The systolic array with N:M zero-row skipping."""

    name = "n_m"

    def plan(self, layer: LayerT, hw: Hardware, weights_on_chip: bool = False) -> list[StepRun]:
        steps = super().plan(layer, hw, weights_on_chip)
        metadata = 0 if weights_on_chip else layer.weight_format.index_words(layer)
        if metadata:
            first = steps[0]
            head = StepRun(first.work, first.ifmap_load_words, first.filter_load_words + metadata,
                           first.psum_load_words, first.store_words, 1)
            rest = ([StepRun(first.work, first.ifmap_load_words, first.filter_load_words,
                             first.psum_load_words, first.store_words, first.repeat - 1)]
                    if first.repeat > 1 else [])
            steps = [head, *rest, *steps[1:]]
        return steps


N_M = NMEngine()
