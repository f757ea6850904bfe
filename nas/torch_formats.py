"""How each weight format trains in torch: its layers and its projection of shared weights.

One entry per :mod:`a3cs_common.formats` type.  ``linear`` and ``conv`` build the trainable
layer of a discrete architecture (:mod:`a3cs.rl.networks`); ``project`` turns the supernet's
shared dense weight into the format (:mod:`nas.supernet`): the nearest block-circulant
matrix, the 1xN mask of largest block norms, the N:M mask of largest magnitudes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from a3cs_common.errors import ConfigError
from a3cs_common.formats import FORMAT_BY_TYPE, WeightFormat
from nas.layers import (
    BlockCirculantConv2d,
    BlockCirculantLinear,
    NMConv2d,
    NMLinear,
    OneByNConv2d,
    OneByNLinear,
    block_l1_mask,
    circulant_index,
    n_m_mask,
)


@dataclass(frozen=True)
class TorchFormat:
    """The torch side of one weight format."""

    #: ``(in_features, out_features, fmt) -> module``
    linear: Callable[[int, int, Any], nn.Module]
    #: ``(in_channels, out_channels, kernel, fmt, stride, padding) -> module``
    conv: Callable[[int, int, int, Any, int, int], nn.Module]
    #: ``(weight [out, in] or [out, in, kh, kw], fmt) -> weight in the format``
    project: Callable[[torch.Tensor, Any], torch.Tensor]


def circulant_projection(matrix: torch.Tensor, block_size: int) -> torch.Tensor:
    """Nearest block-circulant matrix (Frobenius norm): every ``b x b`` block of ``[..., N, K]``
    becomes the circulant matrix of its diagonal means ``v[d] = mean_r B[r, (r - d) mod b]``."""
    *lead, n, k = matrix.shape
    b = block_size
    blocks = matrix.reshape(*lead, n // b, b, k // b, b).transpose(-3, -2)  # [..., p, q, r, s]
    index = circulant_index(b).to(matrix.device)  # index[r, s] = (r - s) mod b
    # column of diagonal d in row r: s = (r - d) mod b  (= index[r, :] read backwards)
    cols = (torch.arange(b, device=matrix.device)[:, None]
            - torch.arange(b, device=matrix.device)[None, :]) % b  # [r, d]
    diagonals = torch.gather(blocks, -1, cols.expand(*blocks.shape[:-2], b, b)).mean(dim=-2)
    expanded = diagonals[..., index]  # [..., p, q, r, s]
    return expanded.transpose(-3, -2).reshape(*lead, n, k)


def _project_circulant(weight: torch.Tensor, fmt: Any) -> torch.Tensor:
    # Blocks run along input channels within each kernel tap (hw_sim.functional's convention);
    # a linear weight on a flattened [C, H, W] input has them along the flattened inputs.
    if weight.dim() == 2:
        return circulant_projection(weight, fmt.block_size)
    taps_first = weight.permute(2, 3, 0, 1)  # [kh, kw, out, in]
    return circulant_projection(taps_first, fmt.block_size).permute(2, 3, 0, 1)


def _project_one_by_n(weight: torch.Tensor, fmt: Any) -> torch.Tensor:
    mask = block_l1_mask(weight, fmt.n, fmt.sparsity)  # [out/n, in]
    expanded = mask.repeat_interleave(fmt.n, dim=0)
    shape = (*expanded.shape, *([1] * (weight.dim() - 2)))
    return weight * expanded.reshape(shape).to(weight.dtype)


def _project_n_m(weight: torch.Tensor, fmt: Any) -> torch.Tensor:
    return weight * n_m_mask(weight, fmt.n, fmt.m).to(weight.dtype)


TORCH_FORMATS: dict[str, TorchFormat] = {
    "dense": TorchFormat(
        linear=lambda i, o, fmt: nn.Linear(i, o),
        conv=lambda i, o, k, fmt, s, p: nn.Conv2d(i, o, k, stride=s, padding=p),
        project=lambda weight, fmt: weight),
    "block_circulant": TorchFormat(
        linear=lambda i, o, fmt: BlockCirculantLinear(i, o, fmt.block_size),
        conv=lambda i, o, k, fmt, s, p: BlockCirculantConv2d(i, o, k, fmt.block_size, stride=s,
                                                             padding=p),
        project=_project_circulant),
    "one_by_n": TorchFormat(
        linear=lambda i, o, fmt: OneByNLinear(i, o, fmt.n, fmt.sparsity),
        conv=lambda i, o, k, fmt, s, p: OneByNConv2d(i, o, k, fmt.n, fmt.sparsity, stride=s,
                                                     padding=p),
        project=_project_one_by_n),
    "n_m": TorchFormat(
        linear=lambda i, o, fmt: NMLinear(i, o, fmt.n, fmt.m),
        conv=lambda i, o, k, fmt, s, p: NMConv2d(i, o, k, fmt.n, fmt.m, stride=s, padding=p),
        project=_project_n_m),
}
if set(TORCH_FORMATS) != set(FORMAT_BY_TYPE):  # a new format registers its torch side here
    raise ImportError(f"nas.torch_formats covers {sorted(TORCH_FORMATS)}, the formats are "
                      f"{sorted(FORMAT_BY_TYPE)}")


def torch_format(fmt: WeightFormat) -> TorchFormat:
    """The torch side of ``fmt``.

    Raises:
        ConfigError: no torch side is registered for the format.
    """
    try:
        return TORCH_FORMATS[fmt.type]
    except KeyError:
        raise ConfigError("weight_format.type", fmt.type,
                          "one of " + ", ".join(TORCH_FORMATS)) from None
