"""The one place where torch's process-wide settings change, always for a block of code and
restored on exit (also on an exception): intra-op threads, oneDNN for acting, deterministic
CUDA kernels."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)``; the previous count is restored
    on exit (also on an exception).  Nothing is changed when the count is already
    ``threads``."""
    previous = torch.get_num_threads()
    if previous == threads:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def acting_kernels(device: torch.device) -> Iterator[None]:
    """The kernels for acting (a forward at batch ``num_envs``, a few rows) on ``device``.

    On CPU, oneDNN's convolution costs 1.5-3x PyTorch's native one at batch 8 (measured
    here: 143-265 us vs 76-100 us for the MinAtar conv), so oneDNN is off inside.
    """
    if device.type != "cpu":
        yield
        return
    # torch.backends.mkldnn.flags() would also reset oneDNN's TF32 mode and warn on CPUs.
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous


@contextmanager
def deterministic_kernels(device: torch.device) -> Iterator[None]:
    """Inside: on CUDA, deterministic algorithms only (``torch.use_deterministic_algorithms``,
    cuBLAS with a fixed workspace), so the same config and seed give the same numbers on the
    same machine; the previous mode is restored on exit.  CPU kernels are deterministic
    already (nothing changes there).

    The cost on CUDA: scatter/index-add kernels run their slower deterministic variants and
    cuBLAS keeps a fixed 4 x 4 MiB workspace; an op without a deterministic variant raises.
    """
    if device.type != "cuda":
        yield
        return
    # read when cuBLAS creates its handle: set before the first matmul of the process
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)
