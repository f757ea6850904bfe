"""The real CPU kernels compute what hw_sim.functional says, and the timing harness times."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from accelerator_model.cpu import kernel_family, onednn_channel_block, torch_conv_uses_onednn
from accelerator_model.cpu_kernels import TimingMethod, make_kernel, time_kernels
from hw_sim import functional as fn
from hw_sim.workload import Conv2d, Linear

GEOMETRIES = [
    dict(kind="conv", in_channels=4, out_channels=16, in_height=10, in_width=10, kernel_size=3),
    dict(kind="conv", in_channels=8, out_channels=16, in_height=9, in_width=7, kernel_size=3,
         stride=2, padding=1, groups=2, batch=2),
    dict(kind="conv", in_channels=8, out_channels=8, in_height=9, in_width=9, kernel_size=3,
         padding=1, groups=8),
    dict(kind="conv", in_channels=8, out_channels=16, in_height=9, in_width=9, kernel_size=2,
         stride=2, ceil_mode=True),
    dict(kind="linear", in_features=64, out_features=32, batch=3),
    dict(kind="linear", in_features=1024, out_features=128),
]
FORMATS = [
    {"type": "dense"},
    {"type": "one_by_n", "n": 4, "density": 0.5, "seed": 3},
    {"type": "one_by_n", "n": 1, "density": 0.3},
    {"type": "block_circulant", "block_size": 4},
]


def _layer(geometry: dict, fmt: dict) -> Conv2d | Linear:
    fields = {k: v for k, v in geometry.items() if k != "kind"}
    cls = Linear if geometry["kind"] == "linear" else Conv2d
    return cls.model_validate({"name": "x", **fields, "weight_format": fmt})


def _reference(kernel) -> np.ndarray:
    """The layer's output from hw_sim.functional (im2col, per-group GEMM, col2im)."""
    layer = kernel.layer
    cols = fn.im2col(kernel.x, layer)
    outs = []
    for g in range(layer.groups):
        if kernel.impl == "torch_dense":
            outs.append(cols[g] @ fn.dense_weight_matrix(kernel.weights, layer)[g].T)
        elif kernel.impl == "torch_fft":
            outs.append(fn.circulant_gemm(cols[g], kernel.weights[g]))
        elif kernel.impl == "scipy_bsr":
            rows = layer.gemm_n // layer.weight_format.n
            mask = layer.block_mask()[g * rows:(g + 1) * rows]
            outs.append(fn.one_by_n_gemm(cols[g], kernel.weights[g], mask))
        else:
            outs.append(cols[g] @ kernel.weights[g].T)
    return fn.col2im(np.stack(outs), layer)


def _fits(geometry: dict, fmt: dict) -> bool:
    """Blocks of 4 (1x4 or circulant b=4) cannot tile the one channel per group of a depthwise
    convolution; hw_sim refuses that layer, so there is no kernel to compare."""
    return fmt["type"] == "dense" or fmt.get("n") == 1 or geometry.get("groups") != 8


@pytest.mark.parametrize(("geometry", "fmt"), [
    (geometry, fmt) for geometry in GEOMETRIES for fmt in FORMATS if _fits(geometry, fmt)])
def test_kernel_matches_functional_semantics(geometry: dict, fmt: dict) -> None:
    kernel = make_kernel(_layer(geometry, fmt), seed=1)
    out = kernel.run()
    out = out.numpy() if isinstance(out, torch.Tensor) else out
    expected = _reference(kernel)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_csr_baseline_matches_functional_semantics(geometry: dict) -> None:
    kernel = make_kernel(_layer(geometry, {"type": "dense"}), seed=2, csr_density=0.3)
    assert kernel.impl == "scipy_csr"
    weights = kernel.weights
    assert 0.25 < np.count_nonzero(weights) / weights.size < 0.35
    np.testing.assert_allclose(kernel.run().numpy(), _reference(kernel), rtol=1e-4, atol=1e-4)


CONV_SHAPES = [
    # (batch, C, H, K, stride, groups): both sides of every clause of torch's rule
    (1, 4, 10, 3, 1, 1), (1, 1, 12, 5, 1, 1), (2, 16, 4, 3, 1, 1), (1, 16, 10, 3, 1, 16),
    (1, 64, 28, 3, 1, 1), (1, 24, 40, 1, 1, 1), (1, 24, 40, 1, 2, 1), (16, 8, 6, 1, 1, 1),
    (1, 6, 6, 3, 2, 1), (1, 8, 12, 1, 1, 4),
]


@pytest.mark.parametrize("shape", CONV_SHAPES)
def test_onednn_rule_matches_torch_dispatch(shape: tuple[int, ...]) -> None:
    batch, channels, size, kernel_size, stride, groups = shape
    layer = Conv2d(name="c", in_channels=channels, out_channels=channels, in_height=size,
                   in_width=size, kernel_size=kernel_size, stride=stride, groups=groups,
                   batch=batch)
    kernel = make_kernel(layer)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            kernel.run()
    finally:
        torch.set_num_threads(previous)
    used = any(e.name == "aten::mkldnn_convolution" for e in prof.events())
    assert torch_conv_uses_onednn(layer, threads=1) == used
    assert kernel_family(layer).startswith("conv_im2col") != used


def test_time_kernels_orders_small_and_large_kernels() -> None:
    small = make_kernel(Linear(name="s", in_features=16, out_features=4))
    large = make_kernel(Conv2d(name="l", in_channels=32, out_channels=64, in_height=28,
                               in_width=28, kernel_size=3, padding=1))
    run = time_kernels([small.run, large.run],
                       TimingMethod(rounds=2, samples=2, min_sample_s=2e-4, warmup_s=0.005))
    t_small, t_large = run.timings
    assert 0 < t_small.latency_s < t_large.latency_s
    # The large conv does ~14 M MACs against the small one's 64: far beyond any load noise.
    assert t_large.latency_s > 10 * t_small.latency_s
    assert run.canary_median_s > 0 and run.canary_p5_s <= run.canary_median_s
    assert t_small.calls_per_sample >= t_large.calls_per_sample >= 1


def test_timing_method_clock_follows_threads() -> None:
    assert TimingMethod(threads=1).clock == "thread_cpu"
    assert TimingMethod(threads=2).clock == "wall"


def test_each_round_settles_a_kernel_before_timing_it() -> None:
    # A kernel that counts its calls: besides the warm-up and the timed samples, each round
    # runs it untimed for settle_s (the core's AVX-512 power state after the canary lasts
    # about a millisecond and would otherwise be timed as part of the kernel).  It sleeps,
    # so that the machine's load barely changes how many calls fit in a settle.
    calls = [0]

    def kernel() -> None:
        calls[0] += 1
        time.sleep(2e-4)

    def count(settle_s: float) -> int:
        calls[0] = 0
        time_kernels([kernel], TimingMethod(rounds=4, samples=1, min_sample_s=1e-5,
                                            warmup_s=1e-3, settle_s=settle_s))
        return calls[0]

    # A 20 ms settle holds ten or more calls even when a loaded machine stretches each 0.2 ms
    # sleep to 2 ms (measured: a 4 ms settle held only ~3 then); without it, none.
    assert count(20e-3) - count(0.0) >= 4 * 2


_VERBOSE_SCRIPT = """
import sys, torch, torch.nn.functional as F
torch.set_num_threads(1)
for c_in, c_out, groups in {shapes}:
    x, w = torch.randn(1, c_in, 8, 8), torch.randn(c_out, c_in // groups, 3, 3)
    print("@@", c_in, c_out, groups, flush=True)
    F.conv2d(x, w, None, 1, 1, 1, groups)
"""


def test_onednn_channel_block_follows_onednn_verbose() -> None:
    # oneDNN reports the implementation and memory layouts it ran: a grouped conv whose
    # channels per group share a block of 16, 8 or 4 runs the blocked direct kernel
    # (jit, src layout aBcd<block>b), any other through im2col + GEMM (gemm:jit).
    shapes = [(32, 64, 2), (64, 32, 8), (16, 64, 4), (48, 96, 8), (16, 64, 8), (48, 96, 48),
              (24, 48, 2), (96, 48, 4)]
    result = subprocess.run([sys.executable, "-c", _VERBOSE_SCRIPT.format(shapes=shapes)],
                            env={**os.environ, "ONEDNN_VERBOSE": "1"}, capture_output=True,
                            text=True, check=True, timeout=120)
    runs = result.stdout.split("@@")[1:]
    assert len(runs) == len(shapes)
    for (c_in, c_out, groups), text in zip(shapes, runs, strict=True):
        conv = next(line for line in text.splitlines() if ",exec," in line
                    and ",convolution," in line)
        layer = Conv2d(name="g", in_channels=c_in, out_channels=c_out, in_height=8,
                       in_width=8, kernel_size=3, padding=1, groups=groups)
        block = onednn_channel_block(layer)
        assert kernel_family(layer) == "conv_grouped"
        assert ("gemm" in conv) == (block == 0), (c_in, c_out, groups, conv)
        if block:
            assert f"src:f32:a:blocked:aBcd{block}b" in conv, (c_in, c_out, groups, conv)
