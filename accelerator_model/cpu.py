"""Edge-CPU latency model: a CPU description, presets, the per-layer model and its profiles.

A CPU is described by :class:`CpuSpec` (cores, SIMD width, vector FMA issue rate, clock, cache
sizes, memory bandwidth, and the threads a layer runs on).  A layer runs as the real kernel
its weight format calls for (:mod:`accelerator_model.cpu_kernels`); which code path that
kernel takes decides its **kernel family** (:func:`kernel_family`), e.g. torch sends a small
single-image 3x3 convolution through im2col + GEMM but a 5x5 or batched one through oneDNN,
and scipy sends ``(1, 1)`` BSR blocks through its CSR routine.

Within a family, latency is first a sum of work terms, each a count of the work the kernel
does in the units its hardware resource serves it, times a fitted coefficient (an additive
roofline)::

    additive_s = sum_j  c[family, j] * x_j(layer, spec)

The work terms ``x_j`` (:data:`TERMS`) are seconds of ideal work on ``spec``: per-call and
per-GEMM overheads in cycles (``1 / f``), SIMD multiply-accumulates at the peak rate
(``macs / (f * lanes * fma_per_cycle * threads)``), scalar inner-loop steps in cycles, element
copies in cycles, and weight bytes at the bandwidth of the level that holds them.  The
coefficients are then dimensionless (cycles per call, 1 / efficiency, cycles per element) and
carry over to another CPU of the same kind: the presets use the reference machine's.

A calibrated profile adds, per family, gradient-boosted regression trees on the layer's shape
descriptors that predict ``log(measured / additive)`` (nn-Meter's per-kernel regressors, here
correcting a physical model rather than replacing it): library quirks such as MKL's choice of
GEMM kernel or a working set at a cache boundary.  ``latency_s = additive_s * exp(trees)``.
Both parts are fitted to real measurements by :mod:`accelerator_model.cpu_calibrate` and
stored with the spec in a **profile** (JSON).

Public entry points: :func:`load_cpu_profile` (a preset name or a profile file),
:func:`layer_latency_s`, :func:`estimate_layers`, :func:`estimate_cpu` (per-layer latencies of
a workload) and :func:`latency_table` (a torch tensor of latencies for many candidate layers,
for the co-search's expected cost).
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from a3cs_common.errors import ConfigError
from a3cs_common.io import atomic_write_text, load_mapping
from a3cs_common.schema import FrozenModel, validate
from hw_sim.workload import Conv2d, Linear, Workload

# --------------------------------------------------------------------------------------------
# The CPU description


class CpuSpec(FrozenModel):
    """One CPU, as the latency model sees it."""

    name: str = Field(min_length=1, description="a label, e.g. the CPU model")
    cores: PositiveInt = Field(description="physical cores")
    threads: PositiveInt = Field(
        default=1, description="threads one layer runs on (torch.set_num_threads); <= cores"
    )
    simd_bits: Literal[64, 128, 256, 512] = Field(description="widest float SIMD register")
    fma_per_cycle: PositiveFloat = Field(
        description="SIMD fused multiply-adds issued per cycle per core (0.5 when the unit is "
        "half as wide as the register, as on Cortex-A7)"
    )
    frequency_ghz: PositiveFloat = Field(description="sustained clock in GHz")
    l1d_kib: PositiveFloat = Field(description="L1 data cache per core, KiB")
    l2_kib: PositiveFloat = Field(description="L2 cache, KiB")
    l3_kib: float = Field(default=0.0, ge=0.0, description="last-level cache, KiB (0: none)")
    memory_bandwidth_gbs: PositiveFloat = Field(description="sustained DRAM bandwidth, GB/s")

    @model_validator(mode="after")
    def _threads_within_cores(self) -> CpuSpec:
        if self.threads > self.cores:
            raise ConfigError("threads", self.threads, f"at most cores={self.cores}")
        return self

    @property
    def frequency_hz(self) -> float:
        return self.frequency_ghz * 1e9

    @property
    def fp32_lanes(self) -> int:
        return self.simd_bits // 32

    def peak_macs_per_s(self, threads: int) -> float:
        """fp32 multiply-accumulates per second at the SIMD peak on ``threads`` cores."""
        return self.frequency_hz * self.fp32_lanes * self.fma_per_cycle * threads

    def cache_bandwidth_gbs(self, working_set_bytes: float) -> float:
        """Bandwidth of the level that holds ``working_set_bytes``: a cache level is taken as
        serving one 64-byte line per cycle (L1: two), DRAM at ``memory_bandwidth_gbs``."""
        line_rate = 64 * self.frequency_ghz  # GB/s at one line per cycle
        if working_set_bytes <= self.l1d_kib * 1024:
            return 2 * line_rate
        if working_set_bytes <= self.l2_kib * 1024:
            return line_rate
        if working_set_bytes <= self.l3_kib * 1024:
            return line_rate / 2
        return self.memory_bandwidth_gbs


# Presets.  Cortex-A7: in-order, NEON issues one 64-bit half of a 128-bit FMA a cycle;
# e.g. a quad-core 1.2 GHz part with 32 KiB L1D and 512 KiB shared L2 (Raspberry Pi 2 class).
# Cortex-A76: two 128-bit FMA pipes; a big core of a Snapdragon 855 class SoC (2.42 GHz,
# 64 KiB L1D, 512 KiB private L2, 2 MiB L3, LPDDR4X).
PRESET_SPECS: dict[str, CpuSpec] = {
    "cortex-a7": CpuSpec(
        name="Cortex-A7 class (4 cores, 1.2 GHz)", cores=4, simd_bits=128, fma_per_cycle=0.5,
        frequency_ghz=1.2, l1d_kib=32, l2_kib=512, l3_kib=0, memory_bandwidth_gbs=3.2,
    ),
    "cortex-a76": CpuSpec(
        name="Cortex-A76 class (4 big cores, 2.42 GHz)", cores=4, simd_bits=128,
        fma_per_cycle=2.0, frequency_ghz=2.42, l1d_kib=64, l2_kib=512, l3_kib=2048,
        memory_bandwidth_gbs=15.0,
    ),
}
PRESETS: tuple[str, ...] = (*PRESET_SPECS, "host")


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _cache_kib(text: str) -> float:
    """``"32K"`` / ``"1024K"`` / ``"2M"`` (sysfs cache size) -> KiB."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)\s*", text)
    if match is None:
        return 0.0
    scale = {"": 1 / 1024, "K": 1, "M": 1024, "G": 1024 * 1024}[match.group(2)]
    return int(match.group(1)) * scale


def detect_host(memory_bandwidth_gbs: float | None = None) -> CpuSpec:
    """The machine this runs on, read from ``/proc/cpuinfo`` and sysfs (Linux).

    Cores are the CPUs this process may run on; SIMD width from the ``avx512f`` / ``avx2``
    / ``avx`` / ``asimd`` flags; two FMA issues a cycle on x86 with FMA (one otherwise);
    the clock from cpufreq's maximum, else ``cpu MHz``; caches from
    ``/sys/devices/system/cpu/cpu0/cache``.  Memory bandwidth is not published by the OS:
    ``memory_bandwidth_gbs`` if given (``a3cs calibrate-cpu`` measures it), else 10 GB/s.
    """
    cpuinfo = _read("/proc/cpuinfo") or ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    if "avx512f" in flags:
        simd_bits = 512
    elif "avx2" in flags or "avx" in flags:
        simd_bits = 256
    else:
        simd_bits = 128
    fma = 2.0 if "fma" in flags else 1.0
    max_khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if max_khz and max_khz.strip().isdigit():
        ghz = int(max_khz) / 1e6
    else:
        ghz = float(fields.get("cpu MHz", "2000")) / 1000
    caches = {1: 32.0, 2: 256.0, 3: 0.0}
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for index in sorted(base.glob("index*")) if base.is_dir() else []:
        level = (_read(str(index / "level")) or "").strip()
        kind = (_read(str(index / "type")) or "").strip()
        size = _cache_kib(_read(str(index / "size")) or "")
        if level.isdigit() and kind in ("Data", "Unified") and size:
            caches[int(level)] = size
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    name = fields.get("model name") or platform.processor() or platform.machine()
    return CpuSpec(
        name=name, cores=max(1, cores or 1), simd_bits=simd_bits, fma_per_cycle=fma,
        frequency_ghz=ghz, l1d_kib=caches[1], l2_kib=caches[2], l3_kib=caches[3],
        memory_bandwidth_gbs=memory_bandwidth_gbs or 10.0,
    )


# --------------------------------------------------------------------------------------------
# Kernel families and work terms

KernelFamily = Literal[
    "linear", "conv_im2col", "conv_onednn", "conv_depthwise", "conv_grouped",
    "bsr_linear", "bsr_conv", "csr_linear", "csr_conv", "fft_linear", "fft_conv",
]
FAMILIES: tuple[KernelFamily, ...] = (
    "linear", "conv_im2col", "conv_onednn", "conv_depthwise", "conv_grouped",
    "bsr_linear", "bsr_conv", "csr_linear", "csr_conv", "fft_linear", "fft_conv",
)

TERMS: tuple[str, ...] = (
    "call",          # cycles: one call's fixed cost (framework dispatch, allocation)
    "batched_call",  # cycles: a call's extra fixed cost for batch > 1 (MKL's GEMM rather than
                     # GEMV path; the sparse kernels' reshapes of a batch)
    "reorders",      # cycles: oneDNN's per-call layout reorders (blocked grouped convs)
    "groups",        # cycles: per independent GEMM (conv groups x images, FFT frequency bins)
    "simd_macs",     # MACs at the SIMD peak over the lanes the kernel fills (complex MACs: 4)
    "simd_macs_pad_m",  # the same with output pixels rounded up to a multiple of the lanes
    "simd_macs_pad_n",  # the same with output channels rounded up to a multiple of the lanes
    "simd_macs_pad_k",  # the same with the reduction rounded up to a multiple of the lanes
    "scalar_macs",   # cycles: one per MAC of a scalar inner loop (scipy)
    "blocks",        # cycles: one per stored sparse block (index decode, loop setup)
    "block_rows",    # cycles: one per sparse block row and input vector
    "in_elements",   # cycles: one per input element read or padded
    "im2col",        # cycles: one per unfolded (im2col) element written
    "im2col_rows",   # cycles: one per unfolded row (one memcpy or loop start per row)
    "im2col_padded_rows",  # cycles: one per unfolded row of a padded conv (border memsets)
    "im2col_strided",  # cycles: one per unfolded element gathered one by one (stride > 1)
    "im2col_copy",   # cycles: one per unfolded element copied again (sparse kernels, batch > 1)
    "out_elements",  # cycles: one per output element written
    "out_bytes",     # output bytes at the bandwidth of the level that holds them
    "weight_bytes",  # weight bytes at the bandwidth of the level that holds the working set
    "fft_butterflies",  # cycles: one per radix-2 butterfly of the forward and inverse FFTs
    "fft_in_vectors",   # cycles: one per forward length-b transform (contiguous input)
    "fft_out_vectors",  # cycles: one per inverse transform (of permuted, strided spectra)
    "in_spectra",    # cycles: one per input-spectrum element (permuted for the products)
    "out_spectra",   # cycles: one per output-spectrum element (permuted for the inverse)
)

# Terms each family's kernel does; the others are zero for it (and not fitted).
_GEMM = ("simd_macs", "simd_macs_pad_m", "simd_macs_pad_n", "simd_macs_pad_k")
_IM2COL = ("im2col", "im2col_rows", "im2col_padded_rows", "im2col_strided")
_FFT = ("call", "groups", "simd_macs", "simd_macs_pad_m", "simd_macs_pad_n", "scalar_macs",
        "out_elements", "fft_butterflies", "fft_in_vectors", "fft_out_vectors", "in_spectra",
        "out_spectra")
FAMILY_TERMS: dict[KernelFamily, tuple[str, ...]] = {
    "linear": ("call", "batched_call", *_GEMM, "out_elements", "out_bytes", "weight_bytes"),
    "conv_im2col": ("call", "groups", *_GEMM, *_IM2COL, "in_elements", "out_elements",
                    "out_bytes", "weight_bytes"),
    "conv_onednn": ("call", *_GEMM, "in_elements", "out_elements", "out_bytes",
                    "weight_bytes"),
    "conv_depthwise": ("call", "simd_macs", "in_elements", "out_elements"),
    "conv_grouped": ("call", "reorders", "groups", "simd_macs", "im2col", "im2col_rows",
                     "im2col_strided", "in_elements", "out_elements", "weight_bytes"),
    "bsr_linear": ("call", "scalar_macs", "blocks", "block_rows", "out_elements"),
    "bsr_conv": ("call", "batched_call", "scalar_macs", "blocks", "block_rows", *_IM2COL,
                 "im2col_copy", "out_elements"),
    "csr_linear": ("call", "scalar_macs", "blocks", "block_rows", "out_elements"),
    "csr_conv": ("call", "batched_call", "scalar_macs", "blocks", "block_rows", *_IM2COL,
                 "im2col_copy", "out_elements"),
    "fft_linear": _FFT,
    "fft_conv": (*_FFT, "in_elements", "im2col", "im2col_rows"),
}

_FLOAT_BYTES = 4
_TORCH_BMM_NAIVE_BELOW = 400


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def torch_conv_uses_onednn(layer: Conv2d, threads: int) -> bool:
    """Whether ``torch.nn.functional.conv2d`` (torch 2.x, fp32 CPU) runs the layer through
    oneDNN rather than its im2col + GEMM path: the rule of ``ConvParams::use_mkldnn`` in
    ATen's Convolution.cpp."""
    kh, kw = layer.kernel_size
    not_plain_1x1 = (layer.stride != (1, 1) or layer.batch >= 16 or (kh, kw) != (1, 1)
                     or threads > 1)
    big_enough = (layer.groups > 1 or (kh > 3 and kw > 3) or layer.batch > 1
                  or layer.batch * layer.in_channels * layer.in_height * layer.in_width > 20480)
    return not_plain_1x1 and big_enough


def onednn_channel_block(layer: Conv2d | Linear) -> int:
    """The channel block (16, 8 or 4) of oneDNN's direct kernel for a grouped convolution,
    the largest that divides both the input and the output channels per group; 0 when none
    does and oneDNN runs it as im2col + GEMM per group instead (``ONEDNN_VERBOSE`` shows
    ``jit:avx512_core`` with ``aBcd{16,8,4}b`` layouts or ``gemm:jit``; checked in tests)."""
    c_in, c_out = layer.channels_per_group, layer.gemm_n
    return next((b for b in (16, 8, 4) if c_in % b == 0 and c_out % b == 0), 0)


def kernel_family(layer: Conv2d | Linear, threads: int = 1) -> KernelFamily:
    """The code path the layer's real kernel takes (see the module docstring)."""
    fmt = layer.weight_format
    linear = isinstance(layer, Linear)
    if fmt.cpu_kernel == "scipy_bsr":
        # scipy runs (1, 1)-block BSR through its CSR routine, one nonzero at a time.
        return ("csr_" if fmt.n == 1 else "bsr_") + ("linear" if linear else "conv")  # type: ignore[return-value]
    if fmt.cpu_kernel == "torch_fft":
        return "fft_linear" if linear else "fft_conv"
    if isinstance(layer, Linear):
        return "linear"
    if not torch_conv_uses_onednn(layer, threads):
        return "conv_im2col"
    if layer.groups == 1:
        return "conv_onednn"
    if layer.channels_per_group == 1 and layer.gemm_n == 1:
        return "conv_depthwise"
    return "conv_grouped"


def _unfold_terms(layer: Conv2d | Linear, family: KernelFamily, x: dict[str, float],
                  f: float) -> None:
    """im2col's work (``x`` in place): torch's, oneDNN's and ``F.unfold``'s unfold copy each
    of the ``C * taps * out_h`` rows per image with one memcpy (stride 1; border memsets when
    padded) or element by element (stride > 1).  torch's conv reads a 1x1, stride-1,
    unpadded input in place; the sparse kernels copy a batch's columns once more, from
    image-major to channel-major."""
    if not isinstance(layer, Conv2d) or (family == "conv_im2col" and layer.taps == 1
                                         and layer.stride == (1, 1)
                                         and layer.padding == (0, 0)):
        return
    elements = layer.groups * layer.gemm_m * layer.gemm_k
    rows = layer.batch * layer.in_channels * layer.taps * layer.out_height
    x["im2col"] = elements / f
    x["im2col_rows"] = rows / f
    x["im2col_padded_rows"] = rows / f if layer.padding != (0, 0) else 0.0
    x["im2col_strided"] = elements / f if layer.stride[1] > 1 else 0.0
    x["im2col_copy"] = elements / f if layer.batch > 1 else 0.0


def work_terms(layer: Conv2d | Linear, spec: CpuSpec) -> np.ndarray:
    """The work terms :data:`TERMS` of one layer on ``spec``, each in seconds of ideal work;
    terms the layer's family does not do are zero.  Shape ``[len(TERMS)]``."""
    family = kernel_family(layer, spec.threads)
    f = spec.frequency_hz
    g, m, n, k = layer.groups, layer.gemm_m, layer.gemm_n, layer.gemm_k
    fmt = layer.weight_format
    # torch kernels use the profile's threads; scipy's sparse products always run on one.
    threads = 1 if family.startswith(("bsr", "csr")) else spec.threads
    peak = spec.peak_macs_per_s(threads)
    lanes = spec.fp32_lanes
    x = dict.fromkeys(TERMS, 0.0)
    x["call"] = 1 / f
    x["batched_call"] = 1 / f if layer.batch > 1 else 0.0
    x["in_elements"] = layer.ifmap_words / f
    x["out_elements"] = layer.ofmap_words / f
    out_bytes = layer.ofmap_words * _FLOAT_BYTES
    x["out_bytes"] = out_bytes / (spec.cache_bandwidth_gbs(out_bytes) * 1e9)
    _unfold_terms(layer, family, x, f)
    if fmt.cpu_kernel == "scipy_bsr":
        kept = int(layer.block_mask().sum())
        blocks = kept * layer.taps  # one (n, 1) BSR block per kept 1xN block and tap
        x["scalar_macs"] = blocks * fmt.n * m / f
        x["blocks"] = blocks / f
        x["block_rows"] = (layer.out_channels // fmt.n) * m / f
    elif fmt.cpu_kernel == "torch_fft":
        b = fmt.block_size
        p, q, bins = n // b, k // b, b // 2 + 1
        complex_macs = g * bins * m * p * q
        # torch.bmm multiplies small matrices (M * Q * P < 400) in a plain loop, larger ones
        # one BLAS call each, vectorised over complex pairs (half the float lanes).
        if m * p * q < _TORCH_BMM_NAIVE_BELOW:
            x["scalar_macs"] = 4 * complex_macs / f
        else:
            pairs = max(1, lanes // 2)
            x["groups"] = g * bins / f
            x["simd_macs"] = 4 * complex_macs / peak
            x["simd_macs_pad_m"] = 4 * g * bins * _round_up(m, pairs) * p * q / peak
            x["simd_macs_pad_n"] = 4 * g * bins * m * _round_up(p, pairs) * q / peak
        x["fft_butterflies"] = g * m * (p + q) * (b // 2) * math.log2(b) / f
        x["fft_in_vectors"] = g * m * q / f
        x["fft_out_vectors"] = g * m * p / f
        x["in_spectra"] = g * m * q * bins / f
        x["out_spectra"] = g * m * p * bins / f
    else:
        weight_bytes = layer.dense_weight_words * _FLOAT_BYTES
        macs = layer.dense_macs
        if family == "conv_grouped":
            block = onednn_channel_block(layer)
            if block:
                # The direct kernel fills `block` of the vector lanes; its input and output
                # are reordered to and from the blocked layout, and it does no im2col.
                x["reorders"] = 1 / f
                macs = macs * max(1, lanes // block)
                for term in _IM2COL:
                    x[term] = 0.0
        # torch's im2col path runs one GEMM per image and group (oneDNN's GEMM path too).
        x["groups"] = g * layer.batch / f
        x["simd_macs"] = macs / peak
        x["simd_macs_pad_m"] = g * _round_up(m, lanes) * n * k / peak
        x["simd_macs_pad_n"] = g * m * _round_up(n, lanes) * k / peak
        x["simd_macs_pad_k"] = g * m * n * _round_up(k, lanes) / peak
        working_set = weight_bytes + (layer.ifmap_words + layer.ofmap_words) * _FLOAT_BYTES
        x["weight_bytes"] = weight_bytes / (spec.cache_bandwidth_gbs(working_set) * 1e9)
    active = FAMILY_TERMS[family]
    return np.array([x[t] if t in active else 0.0 for t in TERMS])


# The residual trees' inputs: ``log`` of positive quantities unless named in _RAW.
DESCRIPTORS: tuple[str, ...] = (
    "batch", "in_channels", "out_channels", "channels_per_group", "out_per_group", "groups",
    "kernel", "stride", "padding", "in_size", "out_size", "gemm_m", "gemm_n", "gemm_k",
    "m_lane_fill", "n_lane_fill", "k_lane_fill", "onednn_block",
    "weight_per_l1", "weight_per_l2", "in_per_l1", "in_per_l2", "out_per_l1", "out_per_l2",
    "im2col_per_l1", "im2col_per_l2", "working_set_per_l2",
    "effective_macs", "block", "density", "stored_blocks", "circulant_p", "circulant_q",
    "bmm_work", "analytic_s",
)
_RAW = frozenset({"kernel", "stride", "padding", "m_lane_fill", "n_lane_fill", "k_lane_fill",
                  "onednn_block"})


def descriptors(layer: Conv2d | Linear, spec: CpuSpec, analytic_s: float) -> np.ndarray:
    """The layer's shape quantities (:data:`DESCRIPTORS`), the inputs of a profile's residual
    trees; natural logs except the small integers and fractions in ``_RAW``.

    ``*_lane_fill`` is the share of the last SIMD vector a GEMM dimension fills (0: full);
    ``*_per_l1`` / ``*_per_l2`` an operand's bytes over the cache size (the trees find the
    cache boundaries); ``block`` is 1xN's ``n`` or the circulant ``b`` (1 for dense);
    ``stored_blocks`` the BSR blocks, the circulant blocks, or 1; ``circulant_p`` / ``_q``
    the circulant blocks per output / input row and ``bmm_work`` ``M * p * q`` (which
    decides torch.bmm's loop or BLAS); ``analytic_s`` the additive model's latency.
    Shape ``[len(DESCRIPTORS)]``."""
    fmt = layer.weight_format
    g, m, n, k = layer.groups, layer.gemm_m, layer.gemm_n, layer.gemm_k
    block, stored, p, q = 1.0, 1.0, 1.0, 1.0
    if fmt.cpu_kernel == "scipy_bsr":
        block, stored = fmt.n, int(layer.block_mask().sum()) * layer.taps
    elif fmt.cpu_kernel == "torch_fft":
        block = fmt.block_size
        stored = layer.dense_weight_words / fmt.block_size**2
        p, q = n // block, k // block
    lanes = spec.fp32_lanes
    l1, l2 = spec.l1d_kib * 1024, spec.l2_kib * 1024
    weight_bytes = layer.stored_weight_words * _FLOAT_BYTES
    in_bytes = layer.ifmap_words * _FLOAT_BYTES
    out_bytes = layer.ofmap_words * _FLOAT_BYTES
    im2col_bytes = g * m * k * _FLOAT_BYTES if isinstance(layer, Conv2d) else in_bytes
    values = {
        "batch": layer.batch, "in_channels": layer.in_channels,
        "out_channels": layer.out_channels, "channels_per_group": layer.channels_per_group,
        "out_per_group": n, "groups": g, "kernel": layer.kernel_size[0],
        "stride": layer.stride[0], "padding": layer.padding[0], "in_size": layer.in_height,
        "out_size": layer.out_height, "gemm_m": m, "gemm_n": n, "gemm_k": k,
        "m_lane_fill": (m % lanes) / lanes, "n_lane_fill": (n % lanes) / lanes,
        "k_lane_fill": (k % lanes) / lanes,
        "onednn_block": onednn_channel_block(layer) if g > 1 else 0,
        "weight_per_l1": weight_bytes / l1, "weight_per_l2": weight_bytes / l2,
        "in_per_l1": in_bytes / l1, "in_per_l2": in_bytes / l2,
        "out_per_l1": out_bytes / l1, "out_per_l2": out_bytes / l2,
        "im2col_per_l1": im2col_bytes / l1, "im2col_per_l2": im2col_bytes / l2,
        "working_set_per_l2": (weight_bytes + im2col_bytes + out_bytes) / l2,
        "effective_macs": layer.dense_macs * layer.weight_density, "block": block,
        "density": layer.weight_density, "stored_blocks": stored, "circulant_p": p,
        "circulant_q": q, "bmm_work": m * p * q, "analytic_s": analytic_s,
    }
    return np.array([float(values[d]) if d in _RAW else math.log(max(values[d], 1e-30))
                     for d in DESCRIPTORS])


class ResidualTrees(FrozenModel):
    """Gradient-boosted regression trees on ``log(measured / analytic)`` for one family:
    ``residual = offset + learning_rate * sum(tree(descriptors))``.  Each tree is stored as
    flat node arrays (sklearn's layout): a node with ``feature == -1`` is a leaf."""

    offset: float
    learning_rate: float = Field(gt=0)
    feature: tuple[tuple[int, ...], ...]
    threshold: tuple[tuple[float, ...], ...]
    left: tuple[tuple[int, ...], ...]
    right: tuple[tuple[int, ...], ...]
    value: tuple[tuple[float, ...], ...]

    @model_validator(mode="after")
    def _check_shapes(self) -> ResidualTrees:
        arrays = (self.feature, self.threshold, self.left, self.right, self.value)
        if len({len(a) for a in arrays}) != 1:
            raise ConfigError("residual", "trees of unequal counts", "equal-length arrays")
        for i, nodes in enumerate(zip(*arrays, strict=True)):
            size = len(nodes[0])
            if any(len(a) != size for a in nodes):
                raise ConfigError(f"residual.tree[{i}]", "nodes of unequal counts",
                                  "equal-length node arrays")
            for f, lo, hi in zip(nodes[0], nodes[2], nodes[3], strict=True):
                if f != -1 and not (0 <= f < len(DESCRIPTORS) and 0 < lo < size
                                    and 0 < hi < size):
                    raise ConfigError(f"residual.tree[{i}]", "a bad split",
                                      f"features in [0, {len(DESCRIPTORS)}), children in "
                                      "the tree")
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """``x [L, len(DESCRIPTORS)]`` -> residual log-ratios ``[L]``."""
        out = np.full(len(x), self.offset)
        rows = np.arange(len(x))
        for feature, threshold, left, right, value in zip(
            self.feature, self.threshold, self.left, self.right, self.value, strict=True
        ):
            f, t = np.asarray(feature), np.asarray(threshold)
            lo, hi, v = np.asarray(left), np.asarray(right), np.asarray(value)
            node = np.zeros(len(x), dtype=int)
            while True:
                inner = f[node] != -1
                if not inner.any():
                    break
                go_left = x[rows, np.maximum(f[node], 0)] <= t[node]
                node = np.where(inner, np.where(go_left, lo[node], hi[node]), node)
            out += self.learning_rate * v[node]
        return out


# --------------------------------------------------------------------------------------------
# Profiles


class CalibrationSummary(FrozenModel):
    """How a profile's coefficients were obtained."""

    date: str = Field(description="ISO date and time of the calibration")
    host: str = Field(description="machine the kernels ran on")
    torch_version: str
    scipy_version: str
    load_average: tuple[float, float, float] = Field(description="1/5/15-min load at the start")
    timing: dict[str, float | int | str] = Field(description="the TimingMethod used")
    train_shapes: int = Field(ge=0)
    held_out_shapes: int = Field(ge=0)
    held_out_within_10pct: float = Field(
        ge=0, le=1, description="share of held-out predictions within +-10 % of measured")
    held_out_median_abs_error: float = Field(ge=0, description="median |pred / meas - 1|")
    repeatability_within_10pct: float = Field(
        ge=0, le=1, description="share of held-out shapes whose two measurements (two kernel "
        "instances in the same run) agree within +-10 %: the ceiling of any model's score")
    analytic_held_out_within_10pct: float = Field(
        ge=0, le=1, description="the same share for the additive model alone")
    per_family_within_10pct: dict[str, float] = Field(default_factory=dict)
    per_family_model: dict[str, str] = Field(
        default_factory=dict, description="per family, the residual model that 5-fold "
        "cross-validation on the training shapes chose (trees and their settings, or none)")
    per_family_cv_within_10pct: dict[str, float] = Field(
        default_factory=dict, description="per family, that model's cross-validated share "
        "within +-10 % on the training shapes")
    canary_median_s: float = Field(gt=0, description="the timing canary's median (s), to "
                                   "compare the machine's state across calibrations")


class CpuProfile(FrozenModel):
    """A CPU, the fitted coefficients of its additive model and, for a calibrated machine,
    the residual trees that correct it."""

    spec: CpuSpec
    coefficients: dict[KernelFamily, dict[str, float]] = Field(
        description="per family, the coefficient of each of its work terms (>= 0)"
    )
    residuals: dict[KernelFamily, ResidualTrees] = Field(
        default_factory=dict, description="per family, trees on log(measured / additive)")
    calibration: CalibrationSummary | None = None

    @model_validator(mode="after")
    def _check_coefficients(self) -> CpuProfile:
        missing = [f for f in FAMILIES if f not in self.coefficients]
        if missing:
            raise ConfigError("coefficients", f"no entry for {missing[0]}",
                              "a mapping with every family: " + ", ".join(FAMILIES))
        for family, terms in self.coefficients.items():
            for term, value in terms.items():
                if term not in FAMILY_TERMS[family]:
                    raise ConfigError(f"coefficients.{family}.{term}", value,
                                      "one of the terms " + ", ".join(FAMILY_TERMS[family]))
                if not (math.isfinite(value) and value >= 0):
                    raise ConfigError(f"coefficients.{family}.{term}", value,
                                      "a finite number >= 0")
        return self

    def coefficient_matrix(self) -> np.ndarray:
        """``[len(FAMILIES), len(TERMS)]`` coefficients (zero where a family lacks a term)."""
        out = np.zeros((len(FAMILIES), len(TERMS)))
        for i, family in enumerate(FAMILIES):
            for term, value in self.coefficients[family].items():
                out[i, TERMS.index(term)] = value
        return out

    def with_spec(self, spec: CpuSpec) -> CpuProfile:
        """The additive coefficients on another CPU.  Their units (cycles, 1 / efficiency)
        carry over to a CPU of the same kind; the residual trees, which learnt this machine's
        quirks, do not."""
        return CpuProfile(spec=spec, coefficients=self.coefficients)


# The reference profile: `a3cs calibrate-cpu --out accelerator_model/data/cpu_reference.json`
# on the reference machine (docs/cpu_model.md).  Presets use its additive coefficients.
REFERENCE_PROFILE = Path(__file__).with_name("data") / "cpu_reference.json"


def preset_profile(name: str) -> CpuProfile:
    """The profile of a preset (``cortex-a7``, ``cortex-a76``, ``host``): its spec with the
    reference profile's additive coefficients (no residual trees).

    Raises:
        ConfigError: unknown preset name.
    """
    if name == "host":
        spec = detect_host()
    elif name in PRESET_SPECS:
        spec = PRESET_SPECS[name]
    else:
        raise ConfigError("cpu", name, "one of the presets " + ", ".join(PRESETS)
                          + " or a profile file (.json/.yaml)")
    reference = validate(CpuProfile, load_mapping(REFERENCE_PROFILE), source=str(REFERENCE_PROFILE))
    return reference.with_spec(spec)


def load_cpu_profile(source: str, *, field: str = "--cpu") -> CpuProfile:
    """A preset by name, or a profile file written by ``a3cs calibrate-cpu``.

    Raises:
        ConfigError: neither a preset nor a readable, valid profile file.
    """
    if source in PRESETS:
        return preset_profile(source)
    if not (source.endswith((".json", ".yaml", ".yml")) or os.sep in source):
        raise ConfigError(field, source, "one of the presets " + ", ".join(PRESETS)
                          + " or a profile file (.json/.yaml)")
    data = load_mapping(source, field=field)
    return validate(CpuProfile, data, source=source)


def save_cpu_profile(profile: CpuProfile, path: str | os.PathLike[str]) -> Path:
    """Write a profile as JSON, atomically (indented; compact when it carries trees)."""
    data = profile.model_dump(mode="json")
    text = json.dumps(data, separators=(",", ":")) if profile.residuals else json.dumps(
        data, indent=1)
    return atomic_write_text(path, text + "\n")


# --------------------------------------------------------------------------------------------
# Estimates


@dataclass(frozen=True)
class CpuLayerEstimate:
    """One layer's estimated latency on a CPU.

    Attributes:
        name: the layer's name.
        family: its kernel family.
        analytic_s: the additive model's latency (s).
        latency_s: the estimate (s): ``analytic_s`` times the residual correction, if the
            profile has one.
    """

    name: str
    family: KernelFamily
    analytic_s: float
    latency_s: float


@dataclass(frozen=True)
class CpuEstimate:
    """A workload's estimated latency on a CPU (layers run one after another).

    Attributes:
        cpu: the CPU's name.
        layers: per-layer estimates, in workload order.
        latency_s: their sum (s).
        fps: inferences per second, ``1 / latency_s``.
    """

    cpu: str
    layers: tuple[CpuLayerEstimate, ...]
    latency_s: float
    fps: float


def estimate_layers(layers: Sequence[Conv2d | Linear], profile: CpuProfile
                    ) -> list[CpuLayerEstimate]:
    """Per-layer estimates for many layers at once (any order, any mix of families)."""
    if not layers:
        return []
    spec = profile.spec
    families = [kernel_family(layer, spec.threads) for layer in layers]
    rows = np.array([FAMILIES.index(f) for f in families])
    terms = np.stack([work_terms(layer, spec) for layer in layers])
    analytic = np.einsum("lt,lt->l", profile.coefficient_matrix()[rows], terms)
    latency = analytic.copy()
    for family, trees in profile.residuals.items():
        pick = np.flatnonzero(rows == FAMILIES.index(family))
        if len(pick):
            x = np.stack([descriptors(layers[i], spec, analytic[i]) for i in pick])
            latency[pick] = analytic[pick] * np.exp(trees.predict(x))
    return [CpuLayerEstimate(layer.name, family, float(a), float(t))
            for layer, family, a, t in zip(layers, families, analytic, latency, strict=True)]


def layer_latency_s(layer: Conv2d | Linear, profile: CpuProfile) -> float:
    """Estimated latency (s) of one call of ``layer``'s kernel on ``profile``'s CPU."""
    return estimate_layers([layer], profile)[0].latency_s


def estimate_cpu(workload: Workload, profile: CpuProfile) -> CpuEstimate:
    """Per-layer estimated latencies of ``workload`` on ``profile``'s CPU, and their sum."""
    layers = tuple(estimate_layers(list(workload.layers), profile))
    total = sum(item.latency_s for item in layers)
    return CpuEstimate(profile.spec.name, layers, total, 1 / total)


def latency_table(layers: Sequence[Conv2d | Linear], profile: CpuProfile) -> Any:
    """Estimated latencies (s) of many candidate layers as a float64 torch tensor ``[L]``.

    The co-search's expected CPU cost of a choice with probabilities ``p [L]`` over the
    candidates ``layers`` is ``(p * latency_table(layers, profile)).sum()``, differentiable in
    ``p``; the table depends on no logit, so it is built once per search space (a few
    thousand layers a second).
    """
    import torch

    return torch.tensor([e.latency_s for e in estimate_layers(layers, profile)],
                        dtype=torch.float64)
