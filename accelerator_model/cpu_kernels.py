"""Real CPU kernels for every hw_sim layer format, and the timing harness that measures them.

Each :class:`LayerKernel` runs one ``hw_sim`` layer on this machine the way a CPU deployment
would, on a fixed random input (float32, batch as the layer says):

* ``dense``: ``torch.nn.functional.conv2d`` (grouped and depthwise included) or ``linear``.
* ``one_by_n``: im2col (``torch.nn.functional.unfold``) then a ``scipy.sparse`` BSR product
  with ``(n, 1)`` blocks: each 1xN block of the layer (``n`` output channels x 1 input
  channel, every kernel tap) is ``taps`` BSR blocks, one per tap, so one input activation
  times an ``n``-vector of weights is the inner step, as in the 1xN paper's kernel.  Groups
  make the BSR matrix block-diagonal.
* ``block_circulant``: im2col in tap-major order, ``torch.fft.rfft`` of every length-``b``
  chunk, one complex ``[M, Q] x [Q, P]`` product per frequency bin (``b/2 + 1`` bins, weight
  spectra precomputed), ``torch.fft.irfft`` back: the CirCNN / GST algorithm of
  :func:`hw_sim.functional.circulant_gemm`.
* ``csr`` (not a hw_sim format; the unstructured-sparsity baseline of the sparsity plot):
  im2col then a ``scipy.sparse`` CSR product with a random element mask.

Every kernel's output equals the numpy semantics in :mod:`hw_sim.functional` (tested).

Timing (:func:`time_kernels`), built for a shared machine whose two vCPUs behave like the
two hyperthreads of one AVX-512 core (a kernel runs up to 2x slower while the other vCPU is
busy, and that state changes every few milliseconds):

* ``torch.set_num_threads(threads)``; with one thread the clock is the thread's CPU time
  (``CLOCK_THREAD_CPUTIME_ID``), so time spent descheduled by other processes is not counted.
* Every kernel is warmed up, then measured in ``rounds``; each round visits all kernels in a
  fresh random order (interleaving: a burst of load hits every kernel a little rather than one
  kernel a lot, and a slow spell of the machine, which can last minutes, hits every kernel's
  rounds alike).  In a round a kernel first runs untimed for ``settle_s`` (its caches refill
  and the core leaves the previous code's power state), then takes ``samples`` samples back
  to back, each a loop of enough calls to last ``min_sample_s``.
* A *canary* (four 64x64x64 matmuls) is timed after every kernel's samples, each time after
  one untimed canary call.  A round's median sample is divided by the mean of the canaries
  either side of it, which cancels most of the machine's momentary slowdown; the kernel's
  value is the median of these ratios over the rounds (``relative``), and its latency is
  ``relative`` times the run's median canary.
* Why the settling: after AVX-512 code (the canary, MKL, oneDNN) this core runs scalar code
  (scipy's sparse loops) up to 1.4x slower for about a millisecond, and AVX-512 code right
  after a long scalar stretch pays a power-up stall of up to 100 us.  Timing a sample right
  after the canary, or the canary right after a kernel, measured those transitions instead
  of the kernels (a 3.4 ms BSR product came out at 1.5 ms); settled, the harness agrees with
  back-to-back calls of the kernel alone within noise.
* On a quiet machine the canary is constant and this is the plain median.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from a3cs_common.torch_settings import torch_threads
from hw_sim.workload import BlockCirculant, Conv2d, Dense, Linear, OneByN

KernelImpl = Literal["torch_dense", "scipy_bsr", "torch_fft", "scipy_csr"]


@dataclass(frozen=True)
class LayerKernel:
    """One layer as a runnable CPU kernel.

    Attributes:
        layer: the hw_sim layer it runs.
        impl: which implementation (see the module docstring).
        run: runs the layer once on ``x`` and returns the output
            (``[batch, out_channels, out_h, out_w]`` or ``[batch, out_features]``).
        x: the input, ``[batch, in_channels, in_h, in_w]`` or ``[batch, in_features]``.
        weights: the weights in :mod:`hw_sim.functional`'s format, per implementation:
            ``torch_dense`` torch layout ``[out, C/groups, kh, kw]`` / ``[out, in]``;
            ``scipy_bsr`` ``[groups, P, C/groups, n, taps]`` block values (the mask is the
            layer's ``block_mask()``); ``torch_fft`` ``[groups, p, q, b]`` defining vectors;
            ``scipy_csr`` the dense ``[groups, N, K]`` matrix with zeros (im2col order).
    """

    layer: Conv2d | Linear
    impl: KernelImpl
    run: Callable[[], Any]
    x: np.ndarray
    weights: np.ndarray


def impl_for(layer: Conv2d | Linear) -> KernelImpl:
    """The kernel implementation that runs a layer's weight format (its ``cpu_kernel``)."""
    return layer.weight_format.cpu_kernel


def make_kernel(
    layer: Conv2d | Linear, *, seed: int = 0, csr_density: float | None = None
) -> LayerKernel:
    """Build the real kernel for ``layer`` with random float32 input and weights.

    Args:
        layer: the layer; its weight format picks the implementation.
        seed: seed of the input and weight values.
        csr_density: build the unstructured CSR baseline instead, keeping this fraction of the
            weights (in (0, 1]); the layer must then be dense.
    """
    rng = np.random.default_rng(seed)
    if isinstance(layer, Linear):
        x = rng.standard_normal((layer.batch, layer.in_features), dtype=np.float32)
    else:
        x = rng.standard_normal(
            (layer.batch, layer.in_channels, layer.in_height, layer.in_width), dtype=np.float32
        )
    if csr_density is not None:
        if not isinstance(layer.weight_format, Dense):
            raise ValueError("the CSR baseline prunes a dense layer")
        return _csr_kernel(layer, x, rng, csr_density)
    impl = impl_for(layer)
    if impl == "scipy_bsr":
        return _bsr_kernel(layer, x, rng)
    if impl == "torch_fft":
        return _fft_kernel(layer, x, rng)
    return _dense_kernel(layer, x, rng)


# ------------------------------------------------------------------------------------------
# im2col shared by the sparse and FFT kernels


def _far_padding(layer: Conv2d) -> tuple[int, int]:
    """Extra zero rows/columns on the far side that ceil_mode windows reach."""
    need_h = (layer.out_height - 1) * layer.stride[0] + layer.kernel_size[0]
    need_w = (layer.out_width - 1) * layer.stride[1] + layer.kernel_size[1]
    return (max(0, need_h - layer.in_height - 2 * layer.padding[0]),
            max(0, need_w - layer.in_width - 2 * layer.padding[1]))


def _padded_input_fn(layer: Conv2d) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> x`` zero-padded for the layer, or ``x`` itself when torch's padding suffices."""
    extra_h, extra_w = _far_padding(layer)
    if not (extra_h or extra_w):
        return lambda t: t
    ph, pw = layer.padding
    pads = (pw, pw + extra_w, ph, ph + extra_h)
    return lambda t: F.pad(t, pads)


def _unfold_fn(layer: Conv2d) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x [B, C, H, W] -> [B, C * taps, L]`` (channel-major: column ``c * taps + tap``)."""
    pad_input = _padded_input_fn(layer)
    padding = (0, 0) if any(_far_padding(layer)) else layer.padding
    kernel, stride = layer.kernel_size, layer.stride
    return lambda t: F.unfold(pad_input(t), kernel, padding=padding, stride=stride)


# ------------------------------------------------------------------------------------------
# dense


def _dense_kernel(layer: Conv2d | Linear, x_np: np.ndarray, rng: np.random.Generator
                  ) -> LayerKernel:
    x = torch.from_numpy(x_np)
    if isinstance(layer, Linear):
        w_np = rng.standard_normal((layer.out_features, layer.in_features), dtype=np.float32)
        w = torch.from_numpy(w_np)

        def run() -> torch.Tensor:
            return F.linear(x, w)

        return LayerKernel(layer, "torch_dense", run, x_np, w_np)
    kh, kw = layer.kernel_size
    w_np = rng.standard_normal((layer.out_channels, layer.channels_per_group, kh, kw),
                               dtype=np.float32)
    w = torch.from_numpy(w_np)
    pad_input = _padded_input_fn(layer)
    padding = (0, 0) if any(_far_padding(layer)) else layer.padding
    stride, groups = layer.stride, layer.groups

    def run_conv() -> torch.Tensor:
        return F.conv2d(pad_input(x), w, None, stride, padding, 1, groups)

    return LayerKernel(layer, "torch_dense", run_conv, x_np, w_np)


# ------------------------------------------------------------------------------------------
# sparse (BSR for 1xN, CSR for the unstructured baseline)


def _columns_fn(layer: Conv2d | Linear) -> Callable[[torch.Tensor], np.ndarray]:
    """``x -> [C * taps, M]`` im2col columns (channel-major rows) as a numpy array.

    A linear layer's input is kept feature-major (``[in_features, batch]``, the layout that
    the previous sparse product ``W @ X`` produces), so it needs no transposing copy.
    """
    if isinstance(layer, Linear):
        return lambda t: t.numpy()
    unfold = _unfold_fn(layer)
    if layer.batch == 1:
        return lambda t: unfold(t)[0].numpy()
    return lambda t: unfold(t).permute(1, 0, 2).reshape(t.shape[1] * layer.taps, -1).numpy()


def _output_fn(layer: Conv2d | Linear) -> Callable[[np.ndarray], torch.Tensor]:
    """``[out, M]`` product -> the layer's output layout."""
    if isinstance(layer, Linear):
        return lambda y: torch.from_numpy(y).t()
    shape = (layer.out_channels, layer.batch, layer.out_height, layer.out_width)
    if layer.batch == 1:
        return lambda y: torch.from_numpy(y).view(1, *shape[:1], *shape[2:])
    return lambda y: torch.from_numpy(y).view(shape).transpose(0, 1)


def _sparse_run(layer: Conv2d | Linear, x_np: np.ndarray, matrix: sp.spmatrix
                ) -> Callable[[], torch.Tensor]:
    if isinstance(layer, Linear):
        x_np = np.ascontiguousarray(x_np.T)
    x = torch.from_numpy(x_np)
    columns, output = _columns_fn(layer), _output_fn(layer)

    def run() -> torch.Tensor:
        return output(matrix @ columns(x))

    return run


def _bsr_kernel(layer: Conv2d | Linear, x_np: np.ndarray, rng: np.random.Generator
                ) -> LayerKernel:
    fmt = layer.weight_format
    assert isinstance(fmt, OneByN)
    n, taps, groups, cg = fmt.n, layer.taps, layer.groups, layer.channels_per_group
    mask = layer.block_mask()  # [out / n, C_g]
    rows_per_group = layer.gemm_n // n
    values = rng.standard_normal((groups, rows_per_group, cg, n, taps), dtype=np.float32)
    values *= mask.reshape(groups, rows_per_group, cg)[..., None, None]
    # BSR block (row r, column c * taps + t) holds values[g, r, c, :, t] for channel c of
    # group g: (n, 1) blocks, column indices ascending within each block row.
    rows, local_channels = np.nonzero(mask)  # row-major: rows ascending, channels ascending
    group = rows // rows_per_group
    channel = group * cg + local_channels
    indices = (channel[:, None] * taps + np.arange(taps)[None, :]).reshape(-1)
    kept = values[group, rows % rows_per_group, local_channels]  # [blocks, n, taps]
    blocks = kept.transpose(0, 2, 1).reshape(-1, n, 1)
    indptr = np.concatenate([[0], np.cumsum(mask.sum(axis=1)) * taps])
    matrix = sp.bsr_matrix(
        (np.ascontiguousarray(blocks), indices.astype(np.int32), indptr.astype(np.int32)),
        shape=(layer.out_channels, layer.in_channels * taps),
    )
    return LayerKernel(layer, "scipy_bsr", _sparse_run(layer, x_np, matrix), x_np, values)


def _csr_kernel(layer: Conv2d | Linear, x_np: np.ndarray, rng: np.random.Generator,
                density: float) -> LayerKernel:
    groups, n, k, taps = layer.groups, layer.gemm_n, layer.gemm_k, layer.taps
    cg = layer.channels_per_group
    dense = rng.standard_normal((groups, n, k), dtype=np.float32)
    keep = max(1, round(density * dense.size))
    flat = np.zeros(dense.size, dtype=bool)
    flat[rng.choice(dense.size, size=keep, replace=False)] = True
    dense *= flat.reshape(dense.shape)
    # im2col order (k = tap * C_g + c) -> unfold order (column (g * C_g + c) * taps + tap).
    full = np.zeros((layer.out_channels, layer.in_channels * taps), dtype=np.float32)
    for g in range(groups):
        block = dense[g].reshape(n, taps, cg).transpose(0, 2, 1).reshape(n, cg * taps)
        full[g * n:(g + 1) * n, g * cg * taps:(g + 1) * cg * taps] = block
    matrix = sp.csr_matrix(full)
    return LayerKernel(layer, "scipy_csr", _sparse_run(layer, x_np, matrix), x_np, dense)


# ------------------------------------------------------------------------------------------
# block-circulant (FFT)


def _fft_kernel(layer: Conv2d | Linear, x_np: np.ndarray, rng: np.random.Generator
                ) -> LayerKernel:
    fmt = layer.weight_format
    assert isinstance(fmt, BlockCirculant)
    b, groups = fmt.block_size, layer.groups
    p, q = layer.gemm_n // b, layer.gemm_k // b
    vectors = rng.standard_normal((groups, p, q, b), dtype=np.float32)
    # [G, bins, q, p]: one complex [M, q] x [q, p] product per bin, precomputed once.
    spectra = torch.fft.rfft(torch.from_numpy(vectors), dim=-1).permute(0, 3, 2, 1).contiguous()
    x = torch.from_numpy(x_np)
    out_shape: tuple[int, ...]
    if isinstance(layer, Linear):
        def tap_major(t: torch.Tensor) -> torch.Tensor:
            return t.view(1, t.shape[0], q, b)

        out_shape = (layer.batch, layer.out_features)
    else:
        unfold = _unfold_fn(layer)
        taps, cg = layer.taps, layer.channels_per_group
        bsz = layer.batch

        def tap_major(t: torch.Tensor) -> torch.Tensor:
            cols = unfold(t).view(bsz, groups, cg, taps, -1)  # [B, G, C_g, taps, L]
            # -> [G, B * L, taps * C_g]: each length-b chunk is b channels of one tap.
            return cols.permute(1, 0, 4, 3, 2).reshape(groups, -1, q, b)

        out_shape = (bsz, layer.out_height, layer.out_width, layer.out_channels)

    def run() -> torch.Tensor:
        x_spec = torch.fft.rfft(tap_major(x), dim=-1)  # [G, M, q, bins]
        y_spec = torch.matmul(x_spec.permute(0, 3, 1, 2), spectra)  # [G, bins, M, p]
        y = torch.fft.irfft(y_spec.permute(0, 2, 3, 1), n=b, dim=-1)  # [G, M, p, b]
        y = y.permute(1, 0, 2, 3).reshape(out_shape)  # groups side by side on the channel axis
        return y if y.dim() == 2 else y.permute(0, 3, 1, 2).contiguous()

    return LayerKernel(layer, "torch_fft", run, x_np, vectors)


# ------------------------------------------------------------------------------------------
# timing


@dataclass(frozen=True)
class TimingMethod:
    """How :func:`time_kernels` measures (see the module docstring).

    Attributes:
        threads: ``torch.set_num_threads`` during the measurement (scipy's sparse products
            run on one thread whatever this says).
        rounds: interleaved rounds over all kernels.
        samples: timed samples a kernel takes in each round.
        min_sample_s: a sample loops over calls until it lasts at least this long (s).
        warmup_s: calls before measuring, per kernel, for at least this long (s).
        settle_s: untimed calls before a kernel's samples in each round, for at least this
            long (s): the core's power state after the previous code lasts about 1 ms.
        seed: seed of the interleaving order.
    """

    threads: int = 1
    rounds: int = 12
    samples: int = 4
    min_sample_s: float = 5e-5
    warmup_s: float = 0.01
    settle_s: float = 2e-3
    seed: int = 0

    @property
    def clock(self) -> Literal["thread_cpu", "wall"]:
        """``thread_cpu`` for one thread (time descheduled is not counted), else ``wall``."""
        return "thread_cpu" if self.threads == 1 else "wall"


@dataclass(frozen=True)
class KernelTiming:
    """The measured latency of one kernel.

    Attributes:
        latency_s: ``relative`` times the run's median canary (s per call).
        relative: median over the rounds of (the round's median sample / the mean of the
            canaries either side of it).
        raw_median_s: plain median of the rounds' median samples, without the canary
            correction (s).
        spread: interquartile range of the rounds' ratios over their median.
        calls_per_sample: calls looped in one sample.
    """

    latency_s: float
    relative: float
    raw_median_s: float
    spread: float
    calls_per_sample: int


@dataclass(frozen=True)
class TimingRun:
    """All timings of one :func:`time_kernels` call.

    Attributes:
        timings: one per kernel, in order.
        canary_median_s: the canary's median over the run (s): the machine-state reference.
        canary_p5_s: its 5th percentile (s): close to the canary's latency on a quiet core.
    """

    timings: list[KernelTiming]
    canary_median_s: float
    canary_p5_s: float


def _per_call_s(run: Callable[[], Any], calls: int, clock: Callable[[], int]) -> float:
    start = clock()
    for _ in range(calls):
        run()
    return (clock() - start) * 1e-9 / calls


def _settle(run: Callable[[], Any], settle_s: float) -> None:
    """Run ``run`` untimed at least once and for at least ``settle_s`` seconds."""
    start = time.perf_counter()
    run()
    while time.perf_counter() - start < settle_s:
        run()


def canary_kernel() -> Callable[[], Any]:
    """Four 64x64x64 fp32 matmuls: the reference timed between samples."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(64, 64, generator=generator)
    b = torch.randn(64, 64, generator=generator)

    def run() -> None:
        for _ in range(4):
            torch.mm(a, b)

    return run


class KernelTimer:
    """Times many kernels one interleaved round at a time (:func:`time_kernels` runs all
    rounds; a calibration saves each round as it finishes).

    Args:
        runs: the kernels' ``run`` functions.
        method: threads, samples and durations (``rounds`` is the caller's loop).
        calls: calls per sample, from an earlier warm-up of the same kernels; ``None`` warms
            every kernel up now (``warmup_s`` each) to choose them.
        progress: called with 1 after each kernel's warm-up and each kernel-round.
    """

    def __init__(self, runs: Sequence[Callable[[], Any]], method: TimingMethod, *,
                 calls: Sequence[int] | None = None,
                 progress: Callable[[int], None] | None = None) -> None:
        self.runs, self.method, self.progress = list(runs), method, progress
        self.clock = time.thread_time_ns if method.clock == "thread_cpu" else time.perf_counter_ns
        self.canary = canary_kernel()
        with torch_threads(self.method.threads):
            self.calls = list(calls) if calls is not None else [self._warm_up(r) for r in runs]

    def _warm_up(self, run: Callable[[], Any]) -> int:
        run()
        start, done = time.perf_counter(), 1
        while time.perf_counter() - start < self.method.warmup_s:
            run()
            done += 1
        per_call = (time.perf_counter() - start) / done
        if self.progress is not None:
            self.progress(1)
        return max(1, math.ceil(self.method.min_sample_s / max(per_call, 1e-9)))

    def _canary_s(self) -> float:
        """One timed canary call after an untimed one (which absorbs the AVX-512 power-up)."""
        self.canary()
        return _per_call_s(self.canary, 1, self.clock)

    def round(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """One round over all kernels in a random order (``seed``).

        Returns:
            Per kernel, the median of its samples (s per call) and the mean of the canaries
            timed either side of them (s); both ``[len(runs)]``.
        """
        median_s, canary_s = np.empty(len(self.runs)), np.empty(len(self.runs))
        with torch_threads(self.method.threads):
            before = self._canary_s()
            for i in np.random.default_rng(seed).permutation(len(self.runs)):
                _settle(self.runs[i], self.method.settle_s)
                median_s[i] = np.median([_per_call_s(self.runs[i], self.calls[i], self.clock)
                                         for _ in range(self.method.samples)])
                after = self._canary_s()
                canary_s[i] = (before + after) / 2
                before = after
                if self.progress is not None:
                    self.progress(1)
        return median_s, canary_s


def summarize(median_s: np.ndarray, canary_s: np.ndarray, calls: Sequence[int]) -> TimingRun:
    """Per-kernel timings from the rounds' median samples and canaries, both
    ``[kernels, rounds]`` (s): the canary-corrected median over the rounds."""
    canary_median = float(np.median(canary_s))
    ratio = median_s / canary_s
    q1, relative, q3 = np.percentile(ratio, [25, 50, 75], axis=1)
    raw = np.median(median_s, axis=1)
    timings = [KernelTiming(float(relative[i] * canary_median), float(relative[i]),
                            float(raw[i]), float((q3[i] - q1[i]) / relative[i]), int(calls[i]))
               for i in range(len(ratio))]
    return TimingRun(timings, canary_median, float(np.percentile(canary_s, 5)))


def time_kernels(
    runs: Sequence[Callable[[], Any]],
    method: TimingMethod = TimingMethod(),
    *,
    progress: Callable[[int], None] | None = None,
) -> TimingRun:
    """Measure the per-call latency of each zero-argument callable (see the module docstring).

    Args:
        runs: the kernels' ``run`` functions.
        method: threads, rounds, samples and durations.
        progress: called with the number of kernel-rounds just completed (for a progress bar;
            ``len(runs) * (rounds + 1)`` in all, warm-up included).

    Returns:
        The timings, one per callable in order, and the canary's statistics.
    """
    timer = KernelTimer(runs, method, progress=progress)
    rounds = [timer.round(method.seed * 1000 + r) for r in range(method.rounds)]
    return summarize(np.stack([m for m, _ in rounds], axis=1),
                     np.stack([c for _, c in rounds], axis=1), timer.calls)
