"""1xN block sparsity: blocks of ``n`` consecutive output channels x 1 input channel.

A block spans all kernel taps.  A boolean block mask of shape ``[out_channels / n,
in_channels / groups]`` says which blocks are kept; it is given explicitly (a trained
layer's) or drawn at a density with a seed, so per-row load imbalance is real (unless it is
drawn ``balanced``: the same number of blocks in every block row, as row-balanced pruning
trains it).  Storage: the kept blocks' values plus one index word per kept block.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

import numpy as np
from pydantic import Field, PositiveInt, field_validator, model_validator

from a3cs_common.errors import ConfigError
from a3cs_common.formats.base import FormatBase, LayerGeometry


class OneByN(FormatBase):
    """1xN block sparsity: blocks of ``n`` output channels x 1 input channel."""

    type: Literal["one_by_n"] = "one_by_n"
    n: PositiveInt = Field(description="output channels per block")
    density: float | None = Field(
        default=None, description="fraction of blocks kept, in (0, 1]; the mask is drawn with `seed`"
    )
    mask: tuple[tuple[bool, ...], ...] | None = Field(
        default=None,
        description="explicit block mask [out_channels / n][in_channels / groups] of 0/1 "
        "(or strings of 0/1 characters, one per row)",
    )
    seed: int = Field(default=0, description="seed of the random mask drawn at `density`")
    balanced: bool = Field(
        default=False, description="draw the random mask with the same number of kept blocks "
        "in every block row (how row-balanced pruning trains a layer; the 1xN engine runs a "
        "row group at the pace of its fullest row)")

    engine = "one_by_n"
    cpu_kernel = "scipy_bsr"

    @model_validator(mode="before")
    @classmethod
    def _sparsity_is_one_minus_density(cls, data: Any) -> Any:
        # Architectures written before the formats were unified say ``sparsity`` (the fraction
        # of blocks pruned); their checkpoints and arch.yaml files still load.
        if isinstance(data, dict) and "sparsity" in data:
            data = dict(data)
            sparsity = data.pop("sparsity")
            if "density" in data:
                raise ConfigError("sparsity", sparsity, "absent when density is given "
                                  "(density = 1 - sparsity)")
            if isinstance(sparsity, bool) or not isinstance(sparsity, int | float) or not (
                    0.0 <= sparsity < 1.0):
                raise ConfigError("sparsity", sparsity, "a fraction in [0, 1) of blocks pruned")
            data["density"] = 1.0 - sparsity
        return data

    @field_validator("mask", mode="before")
    @classmethod
    def _parse_mask(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, np.ndarray):
            value = value.tolist()
        rows = []
        for row in value:
            if isinstance(row, str):
                if set(row) - {"0", "1"}:
                    raise ConfigError("", row, "rows of 0/1 characters")
                rows.append(tuple(ch == "1" for ch in row))
            else:
                rows.append(tuple(bool(x) for x in row))
        return tuple(rows)

    @model_validator(mode="after")
    def _density_xor_mask(self) -> OneByN:
        if (self.density is None) == (self.mask is None):
            raise ConfigError(
                "density", self.density, "exactly one of 'density' or 'mask' must be given"
            )
        if self.density is not None and not 0.0 < self.density <= 1.0:
            raise ConfigError("density", self.density, "a fraction in (0, 1]")
        if self.mask is not None and len({len(r) for r in self.mask}) > 1:
            raise ConfigError("mask", "ragged rows", "rows of equal length")
        if self.mask is not None and self.balanced:
            raise ConfigError("balanced", True, "false with an explicit mask (balanced says "
                              "how the mask at `density` is drawn)")
        return self

    def check(self, layer: LayerGeometry) -> None:
        if layer.gemm_n % self.n:
            raise ConfigError("weight_format.n", self.n,
                              f"a divisor of out_channels/groups={layer.gemm_n}")
        if self.mask is not None:
            shape = (len(self.mask), len(self.mask[0]) if self.mask else 0)
            want = (layer.out_channels // self.n, layer.channels_per_group)
            if shape != want:
                raise ConfigError(
                    "weight_format.mask", f"shape {shape[0]}x{shape[1]}",
                    f"shape {want[0]}x{want[1]} (out_channels/n x in_channels/groups)",
                )
            if not any(any(r) for r in self.mask):
                raise ConfigError("weight_format.mask", "all zeros", "at least one kept block")

    def block_mask(self, layer: LayerGeometry) -> np.ndarray:
        """The block mask, ``bool [out_channels / n, in_channels / groups]`` (read-only)."""
        return self._mask_of_shape((layer.out_channels // self.n, layer.channels_per_group))

    @lru_cache(maxsize=256)  # noqa: B019 - formats are frozen and hashable; masks are re-read often
    def _mask_of_shape(self, shape: tuple[int, int]) -> np.ndarray:
        if self.mask is not None:
            mask = np.array(self.mask, dtype=bool).reshape(shape)
        else:
            assert self.density is not None
            rng = np.random.default_rng(self.seed)
            if self.balanced:  # per block row, the count row-balanced pruning keeps
                rows, cols = shape
                keep = max(1, cols - round(self.sparsity * cols))
                mask = np.zeros(shape, dtype=bool)
                for row in range(rows):
                    mask[row, rng.choice(cols, size=keep, replace=False)] = True
            else:
                total = shape[0] * shape[1]
                keep = max(1, round(self.density * total))
                mask = np.zeros(total, dtype=bool)
                mask[rng.choice(total, size=keep, replace=False)] = True
                mask = mask.reshape(shape)
        mask.setflags(write=False)
        return mask

    @property
    def sparsity(self) -> float:
        """Target fraction of blocks pruned, ``1 - density`` (a mask's own fraction for an
        explicit mask is :meth:`weight_density`'s complement)."""
        if self.density is None:
            raise ValueError("a 1xN format with an explicit mask has no target sparsity")
        return 1.0 - self.density

    def kept_blocks(self, layer: LayerGeometry) -> int:
        return int(self.block_mask(layer).sum())

    def value_words(self, layer: LayerGeometry) -> int:
        return self.kept_blocks(layer) * self.n * layer.taps

    def index_words(self, layer: LayerGeometry) -> int:
        """One index word per kept block."""
        return self.kept_blocks(layer)

    def macs(self, layer: LayerGeometry) -> int:
        return layer.gemm_m * self.kept_blocks(layer) * self.n * layer.taps

    def weight_density(self, layer: LayerGeometry) -> float:
        return float(self.block_mask(layer).mean())

    def width_unit(self) -> int:
        return self.n

    def label(self) -> str:
        if self.density is None:
            return f"1x{self.n}"
        return f"1x{self.n}@{self.sparsity:g}"  # the field's usage: "1x4 at 75 % sparsity"

    def dump(self) -> dict[str, Any]:
        out = self.model_dump(exclude_none=True)
        if not self.balanced:  # the default; files written before the field stay as they were
            del out["balanced"]
        if self.mask is not None:
            out["mask"] = ["".join("1" if x else "0" for x in row) for row in self.mask]
        return out
