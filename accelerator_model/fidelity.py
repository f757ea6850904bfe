"""Random (layer, configuration) pairs for checking the analytical model against hw_sim.

:func:`sample_pairs` draws layers of every weight format -- DRL-sized (MinAtar convolutions,
MLP policy layers) and larger CNN layers -- and configurations of every dataflow, with
finite or unlimited DRAM bandwidth and buffers from far too small to everything-resident.
Pairs that hw_sim refuses (a buffer that cannot hold one tile) are kept apart: the model must
refuse the same ones.  :func:`compare` runs both and returns the per-pair figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from a3cs_common.errors import ConfigError
from a3cs_common.formats import FORMAT_BY_TYPE
from accelerator_model.encode import HardwareBatch, LayerBatch
from accelerator_model.model import evaluate
from hw_sim.hardware import Hardware
from hw_sim.simulate import simulate_layer
from hw_sim.workload import Conv2d, Linear

FORMATS = tuple(FORMAT_BY_TYPE)


@dataclass(frozen=True)
class Pair:
    """One sample: a layer, a configuration and whether its weights are already on chip."""

    layer: Conv2d | Linear
    hw: Hardware
    weights_on_chip: bool
    size_class: str  # "drl" or "cnn"


def _choice(rng: np.random.Generator, values: list) -> object:
    return values[int(rng.integers(len(values)))]


def _layer(rng: np.random.Generator, fmt: str, size_class: str, index: int) -> Conv2d | Linear:
    name = f"l{index}"
    unit = 1
    if fmt == "block_circulant":
        unit = int(_choice(rng, [2, 4, 8, 16]))
    elif fmt == "one_by_n":
        unit = int(_choice(rng, [2, 4, 8]))
    wf: dict = {"type": fmt}
    if fmt == "block_circulant":
        wf["block_size"] = unit
    elif fmt == "one_by_n":
        wf.update(n=unit, density=float(rng.uniform(0.15, 1.0)), seed=int(rng.integers(100)))
    elif fmt == "n_m":
        group = int(_choice(rng, [2, 4, 8]))
        wf.update(n=int(rng.integers(1, group)), m=group)
    batch = int(_choice(rng, [1, 1, 1, 4, 16]))
    if size_class == "drl":
        if rng.random() < 0.5:
            return Linear(name=name, in_features=int(_choice(rng, [16, 64, 128, 256, 512, 1024])),
                          out_features=max(unit, int(_choice(rng, [16, 32, 64, 128, 256]))),
                          batch=batch, weight_format=wf)
        cin = max(unit, int(_choice(rng, [4, 8, 16, 32])))
        cout = max(unit, int(_choice(rng, [16, 32, 64])))
        size = int(_choice(rng, [7, 8, 10, 12]))
        kernel = int(_choice(rng, [1, 3, 5]))
        return Conv2d(name=name, in_channels=cin, out_channels=cout, in_height=size,
                      in_width=size, kernel_size=kernel, padding=int(kernel > 1 and rng.random()
                                                                     < 0.5), batch=batch,
                      weight_format=wf)
    cin = int(_choice(rng, [32, 64, 128, 256]))
    cout = int(_choice(rng, [32, 64, 128, 256]))
    size = int(_choice(rng, [7, 14, 28, 56]))
    kernel = int(_choice(rng, [1, 3, 3]))
    stride = int(_choice(rng, [1, 1, 2]))
    groups = 1
    if fmt != "block_circulant" and rng.random() < 0.15:
        groups = int(_choice(rng, [2, 4]))
    return Conv2d(name=name, in_channels=cin, out_channels=cout, in_height=size, in_width=size,
                  kernel_size=kernel, stride=stride, padding=kernel // 2, groups=groups,
                  weight_format=wf)


def _hardware(rng: np.random.Generator, dataflow: str, index: int) -> Hardware:
    word_bits = int(_choice(rng, [8, 16]))

    def kib() -> float:
        return float(_choice(rng, [0.5, 2, 8, 32, 64, 128, 512]))

    return Hardware.model_validate({
        "name": f"hw{index}", "clock_mhz": float(_choice(rng, [100, 200, 500])),
        "word_bits": word_bits,
        "pe_array": {"rows": int(_choice(rng, [4, 8, 12, 16, 32, 64])),
                     "cols": int(_choice(rng, [4, 8, 16, 30, 32, 64])), "dataflow": dataflow},
        "sram_kb": {"ifmap": kib(), "filter": kib(), "ofmap": kib()},
        "dram": {"bandwidth_words_per_cycle": None if rng.random() < 0.3
                 else int(_choice(rng, [1, 2, 4, 8, 16, 32]))},
        "block_circulant": {
            "fft_points": 16, "fft_units": int(rng.integers(1, 9)),
            "ifft_units": int(rng.integers(1, 9)),
            "fft_pipeline_depth": int(rng.integers(1, 12)),
            "complex_mac_lanes": int(_choice(rng, [8, 16, 32, 64, 128, 256])),
            "stage_buffer_depth": int(rng.integers(1, 4)),
        },
        "one_by_n": {
            "vector_lanes": int(_choice(rng, [1, 2, 4, 8, 16, 32])),
            "lane_width": int(_choice(rng, [1, 2, 4, 8])),
            "index_decode_cycles": int(rng.integers(0, 3)),
            "accumulator_depth": int(_choice(rng, [16, 32, 64, 128])),
        },
        "n_m": True,
    })


def draw_pair(rng: np.random.Generator, i: int, cnn_share: float = 0.3) -> Pair:
    """The ``i``-th pair of a sequence: formats and dataflows cycle with ``i``."""
    fmt = FORMATS[i % len(FORMATS)]
    dataflow = ("ws", "is", "os")[(i // len(FORMATS)) % 3]
    size_class = "cnn" if rng.random() < cnn_share else "drl"
    return Pair(_layer(rng, fmt, size_class, i), _hardware(rng, dataflow, i),
                bool(rng.random() < 0.3), size_class)


def sample_pairs(n: int, seed: int = 0, cnn_share: float = 0.3
                 ) -> tuple[list[Pair], list[Pair]]:
    """Draw pairs until ``n`` run on hw_sim.

    Formats and dataflows are balanced (each pair cycles through them).

    Returns:
        ``(runnable, refused)``: pairs hw_sim runs, and pairs it refuses (a buffer too small).
    """
    rng = np.random.default_rng(seed)
    runnable: list[Pair] = []
    refused: list[Pair] = []
    i = 0
    while len(runnable) < n:
        pair = draw_pair(rng, i, cnn_share)
        i += 1
        try:
            simulate_layer(pair.layer, pair.hw, weights_on_chip=pair.weights_on_chip)
        except ConfigError:
            refused.append(pair)
            continue
        runnable.append(pair)
    return runnable, refused


@dataclass(frozen=True)
class Comparison:
    """Per pair (``[P]`` arrays): hw_sim's and the model's cycles and energy."""

    sim_cycles: np.ndarray
    model_cycles: np.ndarray
    sim_energy_pj: np.ndarray
    model_energy_pj: np.ndarray
    sim_compute_cycles: np.ndarray
    model_compute_cycles: np.ndarray
    formats: np.ndarray
    dataflows: np.ndarray
    size_classes: np.ndarray
    finite_bandwidth: np.ndarray
    model_valid: np.ndarray
    sim_seconds: float
    model_seconds: float


def compare(pairs: list[Pair], progress: Callable[[int], None] | None = None) -> Comparison:
    """Run every pair on hw_sim's event engine and on the batched model."""
    start = time.perf_counter()
    sims = []
    for pair in pairs:
        sims.append(simulate_layer(pair.layer, pair.hw, weights_on_chip=pair.weights_on_chip))
        if progress is not None:
            progress(1)
    sim_seconds = time.perf_counter() - start
    lanes = {pair.hw.one_by_n.vector_lanes for pair in pairs if pair.hw.one_by_n is not None}
    layers = LayerBatch.from_layers([p.layer for p in pairs], lanes=lanes or (1,))
    hws = HardwareBatch.from_hardware([p.hw for p in pairs])
    index = torch.arange(len(pairs))
    on_chip = torch.tensor([p.weights_on_chip for p in pairs])
    start = time.perf_counter()
    est = evaluate(layers, hws, index, index, on_chip)
    model_seconds = time.perf_counter() - start
    return Comparison(
        sim_cycles=np.array([s.total_cycles for s in sims], dtype=float),
        model_cycles=est.total_cycles.numpy(),
        sim_energy_pj=np.array([s.energy_pj for s in sims]),
        model_energy_pj=est.energy_pj.numpy(),
        sim_compute_cycles=np.array([s.compute_cycles for s in sims], dtype=float),
        model_compute_cycles=est.compute_cycles.numpy(),
        formats=np.array([p.layer.weight_format.type for p in pairs]),
        dataflows=np.array([p.hw.pe_array.dataflow for p in pairs]),
        size_classes=np.array([p.size_class for p in pairs]),
        finite_bandwidth=np.array([p.hw.dram.bandwidth_words_per_cycle is not None
                                   for p in pairs]),
        model_valid=est.valid.numpy(),
        sim_seconds=sim_seconds, model_seconds=model_seconds,
    )


def refused_agreement(refused: list[Pair]) -> float:
    """Share of hw_sim-refused pairs that the model also marks invalid."""
    if not refused:
        return 1.0
    lanes = {p.hw.one_by_n.vector_lanes for p in refused if p.hw.one_by_n is not None}
    layers = LayerBatch.from_layers([p.layer for p in refused], lanes=lanes or (1,))
    hws = HardwareBatch.from_hardware([p.hw for p in refused])
    index = torch.arange(len(refused))
    est = evaluate(layers, hws, index, index,
                   torch.tensor([p.weights_on_chip for p in refused]))
    return float((~est.valid).double().mean())
