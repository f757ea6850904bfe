"""N:M structured sparsity: ``n`` of every ``m`` consecutive weights along the reduction
dimension are kept (NVIDIA's 2:4; SCALE-Sim v3's layer-wise N:M).

The reduction dimension of a layer is ``K = in_channels / groups * taps`` per output channel.
The pattern repeats along it; when ``m`` does not divide ``K`` the last, partial group keeps
``min(K mod m, n)`` weights (SCALE-Sim lays the pattern out the same way).  Storage: the kept
values plus, per kept value, its position in its group (``ceil(log2 m)`` bits), packed into
words of the hardware's width.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from a3cs_common.errors import ConfigError
from a3cs_common.formats.base import FormatBase, LayerGeometry

#: Bits of one index metadata word (the accelerators described here use 8-bit words).
INDEX_WORD_BITS = 8


class NM(FormatBase):
    """N:M structured sparsity along the reduction dimension."""

    type: Literal["n_m"] = "n_m"
    n: PositiveInt = Field(description="weights kept in every group of m")
    m: PositiveInt = Field(description="group length along the reduction dimension, >= 2")

    engine = "n_m"
    # No CPU kernel exploits N:M: torch's semi-structured 2:4 sparse tensors run on CUDA
    # (Ampere and later) only, so on a CPU an N:M layer is its masked dense weight.
    cpu_kernel = "torch_dense"

    @model_validator(mode="after")
    def _n_below_m(self) -> NM:
        if self.m < 2:
            raise ConfigError("m", self.m, "an integer >= 2")
        if self.n >= self.m:
            raise ConfigError("n", self.n, f"an integer in [1, m) = [1, {self.m}) "
                              "(n = m is dense: use type dense)")
        return self

    def systolic_reduction(self, layer: LayerGeometry) -> int:
        """``K'``: the reduction length left once the zero weights are skipped (the pattern is
        the same for every output channel, so whole im2col rows drop out)."""
        return self.kept_per_column(layer.gemm_k)

    def kept_per_column(self, reduction: int) -> int:
        """Weights kept of a column of ``reduction`` weights."""
        full, rest = divmod(reduction, self.m)
        return full * self.n + min(rest, self.n)

    def value_words(self, layer: LayerGeometry) -> int:
        return layer.groups * layer.gemm_n * self.kept_per_column(layer.gemm_k)

    def index_bits(self) -> int:
        """Bits of one kept value's position in its group."""
        return max(1, math.ceil(math.log2(self.m)))

    def index_words(self, layer: LayerGeometry) -> int:
        return -(-self.value_words(layer) * self.index_bits() // INDEX_WORD_BITS)

    def macs(self, layer: LayerGeometry) -> int:
        return layer.groups * layer.gemm_m * layer.gemm_n * self.kept_per_column(layer.gemm_k)

    def weight_density(self, layer: LayerGeometry) -> float:
        return self.kept_per_column(layer.gemm_k) / layer.gemm_k

    def label(self) -> str:
        return f"{self.n}:{self.m}"
