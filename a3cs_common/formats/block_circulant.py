"""Block-circulant weights (CirCNN, GST): ``b x b`` circulant blocks computed with FFTs.

For each kernel tap the ``N x C/groups`` weight matrix is a ``p x q`` grid of ``b x b``
circulant blocks, each defined by one length-``b`` vector (``p = N / b``,
``q = C / (groups * b)``).  A run transforms each input vector's ``q`` blocks, multiplies
``p q`` spectra (``b/2 + 1`` complex MACs each, real FFTs) and transforms ``p`` outputs back.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from a3cs_common.errors import ConfigError
from a3cs_common.formats.base import FormatBase, LayerGeometry


class BlockCirculant(FormatBase):
    """Block-circulant weights: ``b x b`` circulant blocks, computed with FFTs."""

    type: Literal["block_circulant"] = "block_circulant"
    block_size: int = Field(description="circulant block size b; a power of two >= 2")

    engine = "block_circulant"
    cpu_kernel = "torch_fft"

    @field_validator("block_size")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value < 2 or value & (value - 1):
            raise ConfigError("", value, "a power of two >= 2 (the FFT engines are radix-2)")
        return value

    def check(self, layer: LayerGeometry) -> None:
        b = self.block_size
        if layer.gemm_n % b or layer.channels_per_group % b:
            raise ConfigError(
                "weight_format.block_size", b,
                f"a power of two dividing out_channels/groups={layer.gemm_n} and "
                f"in_channels/groups={layer.channels_per_group}",
            )

    def value_words(self, layer: LayerGeometry) -> int:
        return layer.dense_weight_words // self.block_size

    def macs(self, layer: LayerGeometry) -> int:
        """Complex MACs of the spectral products: ``(b/2 + 1) p q`` per input vector."""
        b = self.block_size
        p, q = layer.gemm_n // b, layer.gemm_k // b
        return layer.groups * layer.gemm_m * (b // 2 + 1) * p * q

    def flops(self, layer: LayerGeometry) -> int:
        """Per input vector ``q + p`` b-point FFTs of ``(b/2) log2 b`` radix-2 butterflies (10
        real operations each) and the complex MACs (8 each)."""
        b = self.block_size
        p, q = layer.gemm_n // b, layer.gemm_k // b
        ffts = (q + p) * (b // 2) * (b.bit_length() - 1) * 10
        return layer.groups * layer.gemm_m * ffts + 8 * self.macs(layer)

    def weight_density(self, layer: LayerGeometry) -> float:
        return 1.0 / self.block_size

    def width_unit(self) -> int:
        return self.block_size

    def input_unit(self) -> int:
        return self.block_size

    def label(self) -> str:
        return f"bc{self.block_size}"
