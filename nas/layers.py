"""Trainable compressed layers: block-circulant (FFT forward, as in GST), 1xN block-sparse and
N:M structured-sparse.

Both follow the conventions of :mod:`hw_sim.functional`, so a trained layer and its simulated
workload compute the same function:

* im2col order is tap-major, channel fastest (``k = tap * C + c``);
* a block-circulant weight is ``[p, q, b]`` defining vectors over that ``[N, K]`` matrix
  (``p = N / b``, ``q = K / b``); the block for output rows ``i*b ..`` and reduction indices
  ``j*b ..`` is ``C[r, s] = w[i, j, (r - s) mod b]``, so blocks run along channels within
  each tap, and ``C @ x = irfft(rfft(w) * rfft(x))``;
* a 1xN layer keeps a dense ``[N, C, kh, kw]`` weight and a boolean block mask
  ``[N / n, C]``: block ``(r, c)`` is output channels ``r*n .. r*n+n-1`` of input channel
  ``c`` at every tap.  :meth:`OneByNMixin.prune_` keeps the blocks with the largest L1 norm;
* an N:M layer keeps a dense weight and a boolean mask of the weight's shape: along the
  reduction dimension in im2col order, every group of ``m`` consecutive weights of an output
  channel keeps its ``n`` of largest magnitude (:func:`n_m_mask`).

Every layer implements ``hw_sim_layer(name, input_shape)`` (see :mod:`hw_sim.torch_trace`),
exporting its real shape and weight format (1xN: the current mask).  Only ``groups == 1`` is
compressed; depthwise convolutions stay dense.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from a3cs_common.errors import ConfigError
from a3cs_common.formats import NM, BlockCirculant, OneByN
from a3cs_common.schema import validate
from hw_sim.workload import Conv2d, Linear

Schedule = Callable[[float], float]

#: Orthogonal initialisation gains of an actor-critic (CleanRL's and SB3's): hidden layers
#: sqrt(2) (ReLU), the policy output 0.01 (a near-uniform first policy), the value output 1.
HIDDEN_GAIN = math.sqrt(2.0)
POLICY_GAIN = 0.01
VALUE_GAIN = 1.0


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


# --------------------------------------------------------------------------------------------
# Block-circulant


def circulant_index(block_size: int) -> torch.Tensor:
    """``[b, b]`` long tensor ``(r - s) mod b``: ``w[..., index]`` expands defining vectors."""
    r = torch.arange(block_size)
    return (r[:, None] - r[None, :]) % block_size


def expand_circulant(vectors: torch.Tensor) -> torch.Tensor:
    """``[p, q, b]`` defining vectors -> the dense ``[p*b, q*b]`` block-circulant matrix."""
    p, q, b = vectors.shape
    blocks = vectors[:, :, circulant_index(b).to(vectors.device)]  # [p, q, b, b]
    return blocks.permute(0, 2, 1, 3).reshape(p * b, q * b)


def circulant_matmul(cols: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """``[M, q*b]`` rows times the block-circulant ``[p, q, b]`` weight -> ``[M, p*b]``.

    In the frequency domain: ``q`` real FFTs per row, ``b/2 + 1`` complex ``[M, q] x [q, p]``
    products (one per frequency bin), ``p`` inverse FFTs per row.
    """
    p, q, b = vectors.shape
    m = cols.shape[0]
    x_spec = torch.fft.rfft(cols.reshape(m, q, b), dim=-1).permute(2, 0, 1)  # [F, M, q]
    w_spec = torch.fft.rfft(vectors, dim=-1).permute(2, 1, 0)  # [F, q, p]
    y_spec = torch.bmm(x_spec, w_spec).permute(1, 2, 0)  # [M, p, F]
    return torch.fft.irfft(y_spec, n=b, dim=-1).reshape(m, p * b)


CirculantAlgorithm = Literal["expanded", "fft"]


def _check_circulant(block_size: int, algorithm: str, **dims: int) -> CirculantAlgorithm:
    """Validate a block-circulant layer's block size (a power of two dividing every ``dims``
    value) and algorithm; returns the algorithm."""
    validate(BlockCirculant, {"block_size": block_size})  # a power of two, or ConfigError
    if algorithm not in ("expanded", "fft"):
        raise ConfigError("algorithm", algorithm, "expanded or fft")
    if any(value % block_size for value in dims.values()):
        raise ConfigError("block_size", block_size, "a divisor of " + " and ".join(
            f"{name}={value}" for name, value in dims.items()))
    return algorithm  # type: ignore[return-value]


class BlockCirculantLinear(nn.Module):
    """``y = x W^T + bias`` with ``W`` a grid of trainable ``b x b`` circulant blocks.

    Args:
        in_features: input features (a multiple of ``block_size``).
        out_features: output features (a multiple of ``block_size``).
        block_size: circulant block size ``b`` (a power of two).
        bias: learn an additive bias.

        algorithm: how the product is computed (the function and its gradients are the same):
            ``"fft"``, GST's frequency-domain product (:func:`circulant_matmul`, what the
            accelerator's FFT engine does), or ``"expanded"`` (default), the circulant blocks
            expanded to the dense matrix and one GEMM, 10-20x faster to train on a CPU at
            DRL sizes (many small FFTs cost more than the GEMM they replace there).

    Shapes: input ``[..., in_features]`` -> output ``[..., out_features]``.  Parameters:
    ``weight`` ``[out/b, in/b, b]`` (the defining vectors), ``bias`` ``[out_features]``.
    """

    def __init__(self, in_features: int, out_features: int, block_size: int, *,
                 bias: bool = True, algorithm: CirculantAlgorithm = "expanded") -> None:
        super().__init__()
        self.algorithm = _check_circulant(block_size, algorithm, in_features=in_features,
                                          out_features=out_features)
        self.in_features, self.out_features, self.block_size = (in_features, out_features,
                                                                block_size)
        self.weight = nn.Parameter(torch.empty(out_features // block_size,
                                               in_features // block_size, block_size))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.reset_parameters(1.0)

    def reset_parameters(self, gain: float, generator: torch.Generator | None = None) -> None:
        """Normal weights with the variance of a dense layer of the same fan-in times
        ``gain**2`` (orthogonal init is not defined on circulant blocks); zero bias."""
        with torch.no_grad():
            self.weight.normal_(0.0, gain / math.sqrt(self.in_features), generator=generator)
            if self.bias is not None:
                self.bias.zero_()

    def dense_weight(self) -> torch.Tensor:
        """The expanded ``[out_features, in_features]`` matrix."""
        return expand_circulant(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.algorithm == "expanded":
            return F.linear(x, self.dense_weight(), self.bias)
        lead = x.shape[:-1]
        y = circulant_matmul(x.reshape(-1, self.in_features), self.weight)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)

    def hw_sim_layer(self, name: str, input_shape: tuple[int, ...]) -> Linear:
        return Linear(name=name, in_features=self.in_features, out_features=self.out_features,
                      batch=math.prod(input_shape[:-1]),
                      weight_format=BlockCirculant(block_size=self.block_size))

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, block_size={self.block_size}"


class BlockCirculantConv2d(nn.Module):
    """2-D convolution whose per-tap ``[out, in]`` weight matrices are block-circulant.

    Args:
        in_channels, out_channels: multiples of ``block_size``.
        kernel_size, stride, padding: as :class:`torch.nn.Conv2d` (zero padding).
        block_size: circulant block size ``b``.
        algorithm: ``"fft"``: im2col (tap-major) followed by :func:`circulant_matmul`;
            ``"expanded"`` (default): one dense convolution with :meth:`dense_weight` (see
            :class:`BlockCirculantLinear`).

    Shapes: ``[B, in, H, W]`` -> ``[B, out, H', W']``.  ``weight`` is ``[out/b, taps*in/b, b]``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 block_size: int, *, stride: int | tuple[int, int] = 1,
                 padding: int | tuple[int, int] = 0, bias: bool = True,
                 algorithm: CirculantAlgorithm = "expanded") -> None:
        super().__init__()
        self.algorithm = _check_circulant(block_size, algorithm, in_channels=in_channels,
                                          out_channels=out_channels)
        self.in_channels, self.out_channels, self.block_size = (in_channels, out_channels,
                                                                block_size)
        self.kernel_size, self.stride, self.padding = (_pair(kernel_size), _pair(stride),
                                                       _pair(padding))
        taps = self.kernel_size[0] * self.kernel_size[1]
        self.weight = nn.Parameter(torch.empty(out_channels // block_size,
                                               taps * in_channels // block_size, block_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.reset_parameters(1.0)

    @property
    def taps(self) -> int:
        return self.kernel_size[0] * self.kernel_size[1]

    def reset_parameters(self, gain: float, generator: torch.Generator | None = None) -> None:
        """As :meth:`BlockCirculantLinear.reset_parameters` with fan-in ``in * taps``."""
        with torch.no_grad():
            fan_in = self.in_channels * self.taps
            self.weight.normal_(0.0, gain / math.sqrt(fan_in), generator=generator)
            if self.bias is not None:
                self.bias.zero_()

    def dense_weight(self) -> torch.Tensor:
        """The expanded ``[out, in, kh, kw]`` weight of the equivalent dense convolution."""
        matrix = expand_circulant(self.weight)  # [out, taps*in], tap-major
        kh, kw = self.kernel_size
        return matrix.reshape(self.out_channels, kh, kw, self.in_channels).permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.algorithm == "expanded":
            return F.conv2d(x, self.dense_weight(), self.bias, self.stride, self.padding)
        batch, _, height, width = x.shape
        kh, kw = self.kernel_size
        out_h = (height + 2 * self.padding[0] - kh) // self.stride[0] + 1
        out_w = (width + 2 * self.padding[1] - kw) // self.stride[1] + 1
        cols = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)
        # unfold is channel-major [B, C*taps, L]; the circulant blocks need tap-major rows.
        cols = cols.reshape(batch, self.in_channels, self.taps, -1).permute(0, 3, 2, 1)
        y = circulant_matmul(cols.reshape(-1, self.taps * self.in_channels), self.weight)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(batch, out_h, out_w, self.out_channels).permute(0, 3, 1, 2)

    def hw_sim_layer(self, name: str, input_shape: tuple[int, ...]) -> Conv2d:
        return Conv2d(name=name, in_channels=self.in_channels, out_channels=self.out_channels,
                      in_height=input_shape[-2], in_width=input_shape[-1],
                      kernel_size=self.kernel_size, stride=self.stride, padding=self.padding,
                      batch=input_shape[0] if len(input_shape) == 4 else 1,
                      weight_format=BlockCirculant(block_size=self.block_size))

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, block_size={self.block_size}")


# --------------------------------------------------------------------------------------------
# Masked layers (1xN and N:M keep a dense weight and a mask; a mixin says how it is pruned)


class MaskedLinear(nn.Module):
    """A linear layer that multiplies ``masked_weight()`` (given by its pruning mixin) and
    exports its format as ``_format()``.  Shapes: ``[..., in_features]`` -> ``[..., out]``."""

    masked_weight: Callable[[], torch.Tensor]
    _format: Callable[[], object]

    def __init__(self, in_features: int, out_features: int, bias: bool) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.masked_weight(), self.bias)

    def hw_sim_layer(self, name: str, input_shape: tuple[int, ...]) -> Linear:
        return Linear(name=name, in_features=self.in_features, out_features=self.out_features,
                      batch=math.prod(input_shape[:-1]), weight_format=self._format())


class MaskedConv2d(nn.Module):
    """A 2-D convolution that multiplies ``masked_weight()`` (given by its pruning mixin) and
    exports its format as ``_format()``.  Shapes as :class:`torch.nn.Conv2d`."""

    masked_weight: Callable[[], torch.Tensor]
    _format: Callable[[], object]

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int], padding: int | tuple[int, int],
                 bias: bool) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = (_pair(kernel_size), _pair(stride),
                                                       _pair(padding))
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *self.kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.masked_weight(), self.bias, self.stride, self.padding)

    def hw_sim_layer(self, name: str, input_shape: tuple[int, ...]) -> Conv2d:
        return Conv2d(name=name, in_channels=self.in_channels, out_channels=self.out_channels,
                      in_height=input_shape[-2], in_width=input_shape[-1],
                      kernel_size=self.kernel_size, stride=self.stride, padding=self.padding,
                      batch=input_shape[0] if len(input_shape) == 4 else 1,
                      weight_format=self._format())

    def _conv_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


class PrunableMixin(nn.Module):
    """What the pruned layers share: a ``weight``, an optional ``bias`` and a boolean ``mask``
    buffer that the subclass shapes (:meth:`_apply_mask`) and prunes.

    In a dense pass (:func:`dense_pass`, DCIL's refined gradients) the layer multiplies the
    whole weight, with the gradient flowing only into the pruned weights: a loss taken on a
    normal and a dense pass gives the kept weights the sparse network's gradient and the
    pruned ones the dense network's."""

    weight: nn.Parameter
    bias: nn.Parameter | None
    mask: torch.Tensor
    in_dense_pass: bool = False

    def _apply_mask(self, weight: torch.Tensor) -> torch.Tensor:
        """``weight`` with the pruned weights zeroed."""
        raise NotImplementedError

    def masked_weight(self) -> torch.Tensor:
        """What the forward pass multiplies by: the weight with pruned weights zeroed, or in a
        dense pass the whole weight, differentiable only at the pruned positions."""
        sparse = self._apply_mask(self.weight)
        if not self.in_dense_pass:
            return sparse
        return self.weight - sparse + sparse.detach()

    def reset_parameters(self, gain: float, generator: torch.Generator | None = None) -> None:
        """Orthogonal weights times ``gain``, zero bias, everything kept."""
        with torch.no_grad():
            nn.init.orthogonal_(self.weight, gain, generator=generator)
            if self.bias is not None:
                self.bias.zero_()
            self.mask.fill_(True)


# --------------------------------------------------------------------------------------------
# 1xN block sparsity


def block_l1_mask(weight: torch.Tensor, n: int, sparsity: float, *,
                  balanced: bool = False) -> torch.Tensor:
    """The 1xN block mask that keeps the blocks of largest L1 norm.

    Args:
        weight: ``[out, in, *taps]`` (a linear weight has no tap dimensions).
        n: output channels per block (divides ``out``).
        sparsity: fraction of the ``out/n * in`` blocks to prune, in [0, 1).
        balanced: rank the blocks within each block row, keeping the same number in every row
            (the 1xN engine runs a row group at the pace of its fullest row), instead of
            across the whole layer.

    Returns:
        bool ``[out / n, in]`` with exactly ``blocks - round(sparsity * blocks)`` (at least
        one) blocks kept, per row when balanced; ties are broken towards the lower index, so
        the mask is deterministic.
    """
    out, cin = weight.shape[:2]
    norms = weight.detach().abs().reshape(out // n, n, cin, -1).sum(dim=(1, 3))
    rows = norms if balanced else norms.reshape(1, -1)
    total = rows.shape[1]
    keep = max(1, total - round(sparsity * total))
    order = torch.argsort(rows, dim=1, descending=True, stable=True)
    mask = torch.zeros_like(rows, dtype=torch.bool).scatter_(1, order[:, :keep], True)
    return mask.reshape(out // n, cin)


class OneByNMixin(PrunableMixin):
    """Shared state of the 1xN layers: ``weight`` ``[out, in, *taps]``, a ``mask`` buffer
    ``[out/n, in]`` (saved in the state dict) and the target sparsity of the architecture."""

    weight: nn.Parameter
    bias: nn.Parameter | None
    mask: torch.Tensor
    n: int
    target_sparsity: float

    def _init_mask(self, out: int, cin: int, n: int, target_sparsity: float) -> None:
        if n < 1 or out % n:
            raise ConfigError("n", n, f"a divisor of the output channels ({out})")
        if not 0.0 <= target_sparsity < 1.0:
            raise ConfigError("sparsity", target_sparsity, "a fraction in [0, 1)")
        self.n, self.target_sparsity = n, target_sparsity
        self.register_buffer("mask", torch.ones(out // n, cin, dtype=torch.bool))

    def _apply_mask(self, weight: torch.Tensor) -> torch.Tensor:
        out, cin = weight.shape[:2]
        blocks = weight.reshape(out // self.n, self.n, cin, -1)
        kept = blocks * self.mask[:, None, :, None].to(weight.dtype)
        return kept.reshape(weight.shape)

    @property
    def sparsity(self) -> float:
        """Current fraction of pruned blocks."""
        return 1.0 - float(self.mask.float().mean())

    @torch.no_grad()
    def prune_(self, sparsity: float, *, keep_pruned: bool = False,
               balanced: bool = False) -> None:
        """Prune to ``sparsity`` by block L1 norm (per block row when ``balanced``, see
        :func:`block_l1_mask`).

        By default the norm is of the currently kept weights and pruned weights are set to
        zero, so a block once pruned stays pruned while the schedule's sparsity grows; with
        ``keep_pruned`` (DCIL) pruned weights keep their values and the norm is of the whole
        weight, so a pruned block that has grown back is kept again.
        """
        source = self.weight if keep_pruned else self._apply_mask(self.weight)
        self.mask.copy_(block_l1_mask(source, self.n, sparsity, balanced=balanced))
        if not keep_pruned:
            self.weight.copy_(self._apply_mask(self.weight))

    def _format(self) -> OneByN:
        rows = tuple(tuple(bool(v) for v in row) for row in self.mask.cpu().tolist())
        return OneByN(n=self.n, mask=rows)


class OneByNLinear(OneByNMixin, MaskedLinear):
    """Linear layer with 1xN block sparsity (blocks: ``n`` outputs x 1 input).

    Shapes: ``[..., in_features]`` -> ``[..., out_features]``; ``mask`` ``[out/n, in]``.
    """

    def __init__(self, in_features: int, out_features: int, n: int, target_sparsity: float,
                 *, bias: bool = True) -> None:
        MaskedLinear.__init__(self, in_features, out_features, bias)
        self._init_mask(out_features, in_features, n, target_sparsity)
        self.reset_parameters(1.0)

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, n={self.n}, "
                f"target_sparsity={self.target_sparsity}")


class OneByNConv2d(OneByNMixin, MaskedConv2d):
    """2-D convolution with 1xN block sparsity (blocks: ``n`` output channels x 1 input
    channel x all taps).  Shapes as :class:`torch.nn.Conv2d`; ``mask`` ``[out/n, in]``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 n: int, target_sparsity: float, *, stride: int | tuple[int, int] = 1,
                 padding: int | tuple[int, int] = 0, bias: bool = True) -> None:
        MaskedConv2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding,
                              bias)
        self._init_mask(out_channels, in_channels, n, target_sparsity)
        self.reset_parameters(1.0)

    def extra_repr(self) -> str:
        return f"{self._conv_repr()}, n={self.n}, target_sparsity={self.target_sparsity}"


# --------------------------------------------------------------------------------------------
# N:M structured sparsity


def _reduction_major(weight: torch.Tensor) -> torch.Tensor:
    """``[out, in, kh, kw]`` (or ``[out, in]``) -> ``[out, K]`` in im2col order (tap-major,
    channel fastest), the order along which N:M groups run."""
    if weight.dim() == 4:
        weight = weight.permute(0, 2, 3, 1)
    return weight.reshape(weight.shape[0], -1)


def n_m_mask(weight: torch.Tensor, keep: int, m: int) -> torch.Tensor:
    """The mask keeping, in every group of ``m`` consecutive weights along the reduction
    dimension (im2col order), the ``keep`` of largest magnitude.

    Args:
        weight: ``[out, in, kh, kw]`` or ``[out, in]``.
        keep: weights kept per group, in ``[1, m]``; a last, partial group of ``r < m``
            weights keeps ``min(r, keep)``.
        m: group length.

    Returns:
        bool, the shape of ``weight``.  Ties go to the earlier position (deterministic).
    """
    flat = _reduction_major(weight.detach().abs())
    out, k = flat.shape
    pad = (-k) % m
    # Padding sorts last (-1 < |w|) and is cut off again, so a partial group keeps min(r, keep).
    groups = F.pad(flat, (0, pad), value=-1.0).reshape(out, -1, m)
    order = torch.argsort(groups, dim=-1, descending=True, stable=True)[..., :keep]
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, order, True)
    mask = mask.reshape(out, -1)[:, :k]
    if weight.dim() == 4:
        _, cin, kh, kw = weight.shape
        return mask.reshape(out, kh, kw, cin).permute(0, 3, 1, 2).contiguous()
    return mask


class NMMixin(PrunableMixin):
    """Shared state of the N:M layers: ``weight``, a ``mask`` buffer of its shape (saved in
    the state dict), the target ``n`` of every ``m``.  Pruning is gradual like 1xN's: at a
    fraction ``f`` of the target sparsity ``1 - n/m`` every group keeps
    ``m - round(f (m - n))`` weights, from dense to ``n``."""

    weight: nn.Parameter
    bias: nn.Parameter | None
    mask: torch.Tensor
    n: int
    m: int

    def _init_mask(self, n: int, m: int) -> None:
        validate(NM, {"n": n, "m": m})  # 1 <= n < m, or ConfigError
        self.n, self.m = n, m
        self.register_buffer("mask", torch.ones(self.weight.shape, dtype=torch.bool))

    @property
    def target_sparsity(self) -> float:
        return 1.0 - self.n / self.m

    def _apply_mask(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask.to(weight.dtype)

    @property
    def sparsity(self) -> float:
        """Current fraction of pruned weights."""
        return 1.0 - float(self.mask.float().mean())

    @torch.no_grad()
    def prune_(self, sparsity: float, *, keep_pruned: bool = False,
               balanced: bool = True) -> None:
        """Keep ``m - round(sparsity m)`` (at least ``n``) of every ``m`` weights by magnitude
        (balanced by construction, whatever ``balanced`` says):
        of the currently kept ones, pruned weights zeroed and staying pruned (default), or of
        all of them with pruned weights keeping their values (``keep_pruned``, DCIL)."""
        keep = max(self.n, self.m - round(sparsity * self.m))
        source = self.weight if keep_pruned else self._apply_mask(self.weight)
        self.mask.copy_(n_m_mask(source, keep, self.m))
        if not keep_pruned:
            self.weight.copy_(self._apply_mask(self.weight))

    def _format(self) -> NM:
        return NM(n=self.n, m=self.m)


class NMLinear(NMMixin, MaskedLinear):
    """Linear layer with N:M sparsity along its input features.

    Shapes: ``[..., in_features]`` -> ``[..., out_features]``; ``mask`` ``[out, in]``.
    """

    def __init__(self, in_features: int, out_features: int, n: int, m: int, *,
                 bias: bool = True) -> None:
        MaskedLinear.__init__(self, in_features, out_features, bias)
        self._init_mask(n, m)
        self.reset_parameters(1.0)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, n={self.n}, m={self.m}"


class NMConv2d(NMMixin, MaskedConv2d):
    """2-D convolution with N:M sparsity along its reduction dimension (im2col order).
    Shapes as :class:`torch.nn.Conv2d`; ``mask`` ``[out, in, kh, kw]``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 n: int, m: int, *, stride: int | tuple[int, int] = 1,
                 padding: int | tuple[int, int] = 0, bias: bool = True) -> None:
        MaskedConv2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding,
                              bias)
        self._init_mask(n, m)
        self.reset_parameters(1.0)

    def extra_repr(self) -> str:
        return f"{self._conv_repr()}, n={self.n}, m={self.m}"


# --------------------------------------------------------------------------------------------
# Sparsity schedule


def cubic_sparsity_schedule(start: float, end: float) -> Schedule:
    """Fraction of a layer's target sparsity to apply at training progress ``p`` in [0, 1].

    Gradual pruning (Zhu & Gupta 2017): 0 before ``start``, then ``1 - (1 - t)^3`` with
    ``t = (p - start) / (end - start)``, and 1 from ``end`` on: most blocks go early, while
    the network can still recover.

    Raises:
        ConfigError: unless ``0 <= start < end <= 1``.
    """
    if not 0.0 <= start < end <= 1.0:
        raise ConfigError("sparsity schedule", (start, end), "0 <= start < end <= 1")

    def fraction(progress: float) -> float:
        t = min(max((progress - start) / (end - start), 0.0), 1.0)
        return 1.0 - (1.0 - t) ** 3

    return fraction


def prunable_layers(module: nn.Module) -> Iterator[OneByNMixin | NMMixin]:
    """The layers inside ``module`` that a sparsity schedule prunes (1xN and N:M)."""
    for sub in module.modules():
        if isinstance(sub, OneByNMixin | NMMixin):
            yield sub


def has_prunable_layers(module: nn.Module) -> bool:
    """Whether ``module`` holds a layer that a sparsity schedule prunes."""
    return next(prunable_layers(module), None) is not None


def prune_to_schedule(module: nn.Module, progress: float, schedule: Schedule, *,
                      keep_pruned: bool = False, balanced: bool = False) -> None:
    """Prune every 1xN and N:M layer of ``module`` to ``schedule(progress) * its target
    sparsity`` (``keep_pruned``, ``balanced``: see the layers' ``prune_``)."""
    fraction = schedule(progress)
    for layer in prunable_layers(module):
        layer.prune_(fraction * layer.target_sparsity, keep_pruned=keep_pruned,
                     balanced=balanced)


@contextmanager
def dense_pass(module: nn.Module) -> Iterator[None]:
    """Within the block, every 1xN and N:M layer of ``module`` runs a dense pass (see
    :class:`PrunableMixin`)."""
    layers = list(prunable_layers(module))
    for layer in layers:
        layer.in_dense_pass = True
    try:
        yield
    finally:
        for layer in layers:
            layer.in_dense_pass = False
