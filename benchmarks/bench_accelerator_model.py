"""Throughput of the batched analytical accelerator model, and its ratio to hw_sim's event
engine on the same (layer, configuration) pairs.

Two sets of pairs:

* ``mixed``: the fidelity study's random pairs (every format and dataflow, DRL and CNN layers,
  finite and unlimited bandwidth), ``--pairs`` of them drawn from 256 layers x 256
  configurations;
* ``search``: the MinAtar reference agent's layers on every configuration of the ZC706 search
  space (experiments/hw/zc706_space.yaml): what an accelerator search evaluates.

For each set and precision (float64: exact; float32: the searches' default) it times
:func:`accelerator_model.model.evaluate` ``--repeats`` times and reports the median (the
model runs its kernels on the calling thread, whatever ``torch.set_num_threads`` says: one
core); hw_sim's event engine
(:func:`hw_sim.simulate.simulate_layer`) runs a random subset of the same pairs
(``--sim-pairs``).  Prints a table (also evaluations per CPU second of the process, which on a
busy shared machine estimates what a dedicated core does) and writes
experiments/results/model_bench.json.

    python benchmarks/bench_accelerator_model.py
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from a3cs_common.errors import ConfigError
from a3cs_common.io import atomic_write_text
from accelerator_model.encode import HardwareBatch, LayerBatch
from accelerator_model.fidelity import draw_pair
from accelerator_model.model import evaluate
from accelerator_model.space import AcceleratorSpace
from hw_sim.files import load_workload
from hw_sim.simulate import simulate_layer

REPO = Path(__file__).resolve().parents[1]


def mixed_pairs(n_pairs: int, seed: int) -> tuple[list, list, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    drawn = [draw_pair(rng, i) for i in range(256)]
    layers = [p.layer for p in drawn]
    hws = [p.hw for p in drawn]
    generator = torch.Generator().manual_seed(seed)
    return (layers, hws, torch.randint(len(layers), (n_pairs,), generator=generator),
            torch.randint(len(hws), (n_pairs,), generator=generator))


def search_pairs() -> tuple[list, HardwareBatch, torch.Tensor, torch.Tensor, torch.Tensor,
                            AcceleratorSpace]:
    space = AcceleratorSpace.from_yaml(str(REPO / "experiments/hw/zc706_space.yaml"))
    workload = load_workload(str(REPO / "experiments/workloads/minatar_reference.yaml"))
    grid = torch.cat(list(space.grid()))
    hws = space.encode(grid)
    n_layers, n_hw = len(workload.layers), len(hws)
    li = torch.arange(n_layers).repeat_interleave(n_hw)
    hi = torch.arange(n_hw).repeat(n_layers)
    return list(workload.layers), hws, li, hi, grid, space


def time_model(layers: LayerBatch, hws: HardwareBatch, li: torch.Tensor, hi: torch.Tensor,
               dtype: torch.dtype, repeats: int) -> tuple[list[float], list[float]]:
    """Evaluations per wall second and per CPU second of the process, one per run."""
    evaluate(layers, hws, li[:4096], hi[:4096], dtype=dtype)  # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        evaluate(layers, hws, li, hi, dtype=dtype)
        wall.append(li.numel() / (time.perf_counter() - start))
        cpu.append(li.numel() / (time.process_time() - start_cpu))
    return wall, cpu


def time_hw_sim(pairs: list[tuple]) -> float:
    start = time.perf_counter()
    for layer, hw in pairs:
        # A refused pair costs hw_sim its planning time, as it costs the model its checks.
        with contextlib.suppress(ConfigError):
            simulate_layer(layer, hw)
    return len(pairs) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=1 << 18, help="mixed pairs (default 2^18)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (median reported)")
    parser.add_argument("--sim-pairs", type=int, default=300,
                        help="pairs timed on hw_sim's event engine (default 300)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "experiments/results/model_bench.json"))
    args = parser.parse_args(argv)
    for name in ("pairs", "repeats", "sim_pairs"):
        if getattr(args, name) < 1:
            print(f"{parser.prog}: error: --{name.replace('_', '-')}: got "
                  f"{getattr(args, name)}; allowed: an integer >= 1", file=sys.stderr)
            return 2
    rng = np.random.default_rng(args.seed)
    rows = []

    layers, hw_list, li, hi = mixed_pairs(args.pairs, args.seed)
    lanes = {hw.one_by_n.vector_lanes for hw in hw_list}
    layer_batch = LayerBatch.from_layers(layers, lanes=lanes)
    hw_batch = HardwareBatch.from_hardware(hw_list)
    subset = rng.choice(li.numel(), size=min(args.sim_pairs, li.numel()), replace=False)
    sim_rate = time_hw_sim([(layers[int(li[i])], hw_list[int(hi[i])]) for i in subset])
    for dtype in (torch.float64, torch.float32):
        rates = time_model(layer_batch, hw_batch, li, hi, dtype, args.repeats)
        rows.append(("mixed", str(dtype).split(".")[1], li.numel(), *rates, sim_rate))

    workload_layers, space_hws, sli, shi, grid, space = search_pairs()
    search_layers = LayerBatch.from_layers(workload_layers)
    subset = rng.choice(sli.numel(), size=min(args.sim_pairs, sli.numel()), replace=False)
    sim_rate = time_hw_sim([(workload_layers[int(sli[i])],
                             space.hardware(space.values(grid[int(shi[i])]))[0])
                            for i in subset])
    for dtype in (torch.float64, torch.float32):
        rates = time_model(search_layers, space_hws, sli, shi, dtype, args.repeats)
        rows.append(("search", str(dtype).split(".")[1], sli.numel(), *rates, sim_rate))

    print(f"one thread (the model's), cpus {os.cpu_count()}, load average "
          f"{os.getloadavg()[0]:.2f}")
    print(f"{'pairs':8s} {'dtype':8s} {'n':>9s} {'median eval/s':>14s} {'min':>11s} "
          f"{'max':>11s} {'per CPU-s':>11s} {'hw_sim eval/s':>14s} {'speed-up':>9s}")
    report = {"threads": 1, "load_average": os.getloadavg()[0], "rows": []}
    for name, dtype, n, rates, cpu_rates, sim in rows:
        median = statistics.median(rates)
        per_cpu = statistics.median(cpu_rates)
        print(f"{name:8s} {dtype:8s} {n:9,d} {median:14,.0f} {min(rates):11,.0f} "
              f"{max(rates):11,.0f} {per_cpu:11,.0f} {sim:14,.0f} {median / sim:9,.0f}x")
        report["rows"].append({"pairs": name, "dtype": dtype, "n": n,
                               "evaluations_per_s": rates, "median_evaluations_per_s": median,
                               "median_evaluations_per_cpu_s": per_cpu,
                               "hw_sim_evaluations_per_s": sim, "speedup": median / sim})
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
