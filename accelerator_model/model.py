"""The batched analytical accelerator model: latency, energy and FPS of (layer, configuration)
pairs, and whole-workload estimates in hw_sim's report types.

:func:`evaluate` takes encoded layers and configurations (:mod:`accelerator_model.encode`)
and index tensors naming the pairs; it routes each pair to the closed form of its engine
(:mod:`accelerator_model.engines`) and prices the counted actions with hw_sim's own
:func:`hw_sim.report.energy_of` and energy table.  :func:`estimate` does the same for a
:class:`hw_sim.workload.Workload` on a :class:`hw_sim.hardware.Hardware` and returns a
:class:`hw_sim.report.SimReport`, so ``a3cs estimate`` and ``a3cs simulate`` print the same
table and JSON fields.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from a3cs_common.errors import ConfigError
from a3cs_common.torch_settings import torch_threads
from accelerator_model.encode import (
    ENERGY_FIELDS,
    ENGINE_NAMES,
    ROW_GROUP_FIELDS,
    HardwareBatch,
    LayerBatch,
)
from accelerator_model.engines import (
    MISSING_ENGINE,
    REASONS,
    PairView,
    block_circulant,
    one_by_n,
    systolic,
)
from hw_sim.hardware import ActionEnergy, Hardware
from hw_sim.power import static_power
from hw_sim.report import LayerReport, SimReport, energy_of
from hw_sim.schedule import COUNT_FIELDS, DramTraffic, OpCounts
from hw_sim.simulate import weights_stay_on_chip
from hw_sim.workload import Workload

TRAFFIC_FIELDS = ("ifmap_dram_reads", "filter_dram_reads", "psum_dram_reads",
                  "ofmap_dram_writes")
CHUNK_PAIRS = 1 << 14  # pairs per slice: keeps the intermediate columns in cache


@dataclass(frozen=True, slots=True)
class PairEstimate:
    """The model's estimate for a batch of pairs; every field a float64 tensor of the batch's
    shape (``[P]``, or ``[L, H]`` from :func:`evaluate_grid`).

    Fields named as in :class:`hw_sim.report.LayerReport` (cycles in SCALE-Sim's convention,
    energies in pJ, ``latency_s`` in seconds).  ``valid`` is False where hw_sim would refuse
    the pair (no engine for the format, or a buffer that cannot hold one tile); there every
    figure is NaN and ``reason`` (a key of :data:`accelerator_model.engines.REASONS`) and
    ``need_words`` say why.
    """

    total_cycles: Tensor
    compute_cycles: Tensor
    stall_cycles: Tensor
    utilization: Tensor
    macs: Tensor
    complex_macs: Tensor
    fft_butterflies: Tensor
    index_decodes: Tensor
    ifmap_sram_reads: Tensor
    filter_sram_reads: Tensor
    ofmap_sram_reads: Tensor
    ofmap_sram_writes: Tensor
    ifmap_dram_reads: Tensor
    filter_dram_reads: Tensor
    psum_dram_reads: Tensor
    ofmap_dram_writes: Tensor
    compute_energy_pj: Tensor
    sram_energy_pj: Tensor
    dram_energy_pj: Tensor
    latency_s: Tensor
    engine: Tensor
    valid: Tensor
    reason: Tensor
    need_words: Tensor

    @property
    def energy_pj(self) -> Tensor:
        return self.compute_energy_pj + self.sram_energy_pj + self.dram_energy_pj

    def reshape(self, *shape: int) -> PairEstimate:
        return PairEstimate(*(getattr(self, f.name).reshape(*shape) for f in fields(self)))


def evaluate(layers: LayerBatch, hws: HardwareBatch, layer_index: Tensor, hw_index: Tensor,
             weights_on_chip: Tensor | None = None, *,
             dtype: torch.dtype = torch.float64) -> PairEstimate:
    """Estimate the pairs ``(layers[layer_index[i]], hws[hw_index[i]])``.

    Args:
        layers: encoded layers.
        hws: encoded configurations.
        layer_index: ``[P]`` long tensor of rows of ``layers``.
        hw_index: ``[P]`` long tensor of rows of ``hws``.
        weights_on_chip: ``[P]`` bool: the pair's weights are already in the filter buffer
            (hw_sim's ``weights_on_chip``; see :func:`hw_sim.simulate.weights_stay_on_chip`).
            Default: all False.
        dtype: arithmetic precision.  float64 (default) is exact wherever the model is
            (integers up to 2**53); float32 is about 1.7x faster, exact below 2**24 and within
            a few 1e-7 relative beyond (enough to rank configurations in a search).

    Returns:
        ``[P]`` estimates, in the order of the pairs.

    Raises:
        ValueError: a 1xN pair's ``vector_lanes`` is not among ``layers.lanes``.
    """
    # The model is thousands of small element-wise kernels, run on the calling thread only.
    # With torch's intra-op threads each kernel over 32768 elements is split and waits for
    # every thread: on an idle 2-core machine that was 1.4x faster, but with another process
    # on the second core 10-30x slower (0.07-0.1 M evaluations/s against 1.2-1.3 M on one
    # thread, benchmarks/bench_accelerator_model.py).  More cores are better used by more
    # processes.
    with torch_threads(1):
        return _evaluate(layers, hws, layer_index, hw_index, weights_on_chip, dtype)


def _evaluate(layers: LayerBatch, hws: HardwareBatch, layer_index: Tensor, hw_index: Tensor,
              weights_on_chip: Tensor | None, dtype: torch.dtype) -> PairEstimate:
    total = int(layer_index.numel())
    if weights_on_chip is None:
        weights_on_chip = torch.zeros(total, dtype=torch.bool)
    # Pairs of one engine (and dataflow) are evaluated together: sort by that key once.
    key = layers.fmt.index_select(0, layer_index) * 3
    # The systolic array (code 0) and its N:M variant (code 3) have one model per dataflow.
    key = key + ((key == 0) | (key == 9)) * hws.dataflow.index_select(0, hw_index)
    order = None
    if total > 1 and bool((key[1:] < key[:-1]).any()):
        order = torch.cat([torch.nonzero(key == value).squeeze(1)
                           for value in sorted(_ENGINE_OF_KEY)])
        key, layer_index, hw_index, weights_on_chip = (
            x.index_select(0, order) for x in (key, layer_index, hw_index, weights_on_chip))
    values, counts = torch.unique_consecutive(key, return_counts=True)
    parts = []
    start = 0
    for value, count in zip(values.tolist(), counts.tolist(), strict=True):
        for lo in range(start, start + count, CHUNK_PAIRS):
            hi = min(lo + CHUNK_PAIRS, start + count)
            parts.append(_evaluate_slice(layers, hws, layer_index[lo:hi], hw_index[lo:hi],
                                         weights_on_chip[lo:hi], int(value), dtype))
        start += count
    if not parts:
        parts.append(_evaluate_slice(layers, hws, layer_index, hw_index, weights_on_chip, 0,
                                     dtype))
    out = {f.name: torch.cat([getattr(p, f.name) for p in parts]) if len(parts) > 1
           else getattr(parts[0], f.name) for f in fields(PairEstimate)}
    if order is not None:
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(total)
        out = {name: column.index_select(0, inverse) for name, column in out.items()}
    return PairEstimate(**out)


def evaluate_grid(layers: LayerBatch, hws: HardwareBatch,
                  weights_on_chip: Tensor | None = None, *,
                  dtype: torch.dtype = torch.float64) -> PairEstimate:
    """Every layer on every configuration: ``[L, H]`` estimates.

    ``weights_on_chip``: ``[H]`` or ``[L, H]`` bool (default all False); ``dtype`` as in
    :func:`evaluate`.
    """
    n_layers, n_hw = len(layers), len(hws)
    li = torch.arange(n_layers).repeat_interleave(n_hw)
    hi = torch.arange(n_hw).repeat(n_layers)
    on_chip = None
    if weights_on_chip is not None:
        on_chip = weights_on_chip.expand(n_layers, n_hw).reshape(-1)
    return evaluate(layers, hws, li, hi, on_chip, dtype=dtype).reshape(n_layers, n_hw)


_ENGINE_OF_KEY = {0: (0, "ws"), 1: (0, "is"), 2: (0, "os"), 3: (1, None), 6: (2, None),
                  9: (3, "ws"), 10: (3, "is"), 11: (3, "os")}
_ENGINE_NAMES = (*COUNT_FIELDS, *TRAFFIC_FIELDS, "occupancy_cycles", "compute_occupancy_cycles",
                 "useful_ops", "peak_ops_per_cycle")


def _evaluate_slice(layers: LayerBatch, hws: HardwareBatch, li: Tensor, hi: Tensor,
                    on_chip: Tensor, key: int, dtype: torch.dtype) -> PairEstimate:
    """Pairs that all run on one engine (and, for the systolic array, one dataflow)."""
    size = li.numel()
    fmt, dataflow = _ENGINE_OF_KEY[key]
    view = _pair_view(layers, hws, li, hi, fmt, dtype)
    chip = on_chip.to(dtype)
    if fmt in (0, 3):
        est = systolic(view, chip, dataflow, n_m=fmt == 3)
    elif fmt == 1:
        est = block_circulant(view, chip)
    else:
        est = one_by_n(view, chip)
    out = {name: getattr(est, name) for name in _ENGINE_NAMES}
    reason, need = est.reason, est.need_words
    if fmt:
        # REASONS 1 and 2: the configuration has no engine for the format.
        present = {1: view.has_bc, 2: view.has_nx, 3: view.has_nm}[fmt]
        reason = torch.lerp(torch.full_like(reason, float(MISSING_ENGINE[fmt])), reason,
                            present)
    valid = reason == 0
    if not bool(valid.all()):
        nan = torch.tensor(float("nan"), dtype=dtype)
        out = {name: torch.where(valid, column, nan) for name, column in out.items()}

    table = ActionEnergy(*(getattr(view, name) for name in ENERGY_FIELDS))
    counts = OpCounts(*(out[name] for name in COUNT_FIELDS))
    traffic = DramTraffic(*(out[name] for name in TRAFFIC_FIELDS))
    energy = energy_of(counts, traffic, table)
    occupancy = out["occupancy_cycles"]
    total_cycles = occupancy - 1
    return PairEstimate(
        total_cycles=total_cycles,
        compute_cycles=out["compute_occupancy_cycles"] - 1,
        stall_cycles=occupancy - out["compute_occupancy_cycles"],
        utilization=out["useful_ops"] / (out["peak_ops_per_cycle"] * occupancy),
        **{name: out[name] for name in (*COUNT_FIELDS, *TRAFFIC_FIELDS)},
        compute_energy_pj=energy.compute_pj,
        sram_energy_pj=energy.sram_pj,
        dram_energy_pj=energy.dram_pj,
        latency_s=total_cycles / view.clock_hz,
        engine=torch.full((size,), float(fmt), dtype=dtype),
        valid=valid,
        reason=reason,
        need_words=need,
    )


def _pair_view(layers: LayerBatch, hws: HardwareBatch, li: Tensor, hi: Tensor,
               fmt: int, dtype: torch.dtype) -> PairView:
    """Gather every column the engine reads."""
    per_layer, row_groups = layers.columns(dtype)
    columns = dict(zip(LayerBatch.PER_LAYER, per_layer.index_select(1, li).unbind(0),
                       strict=True))
    columns.update(zip(HardwareBatch.COLUMN_NAMES, hws.columns(dtype).index_select(1, hi)
                       .unbind(0), strict=True))
    if fmt == 2:
        v = columns["nx_lanes"].long()
        table = layers.lane_column()
        col = table[torch.clamp(v, max=len(table) - 1)]
        missing = (col < 0) | (v >= len(table))
        if bool(missing.any()):
            raise ValueError(f"vector_lanes {sorted(set(v[missing].tolist()))} not among the "
                             f"lanes the layers were encoded for {layers.lanes}")
        rows = li * len(layers.lanes) + col
        columns.update(zip(ROW_GROUP_FIELDS, row_groups.index_select(1, rows).unbind(0),
                           strict=True))
    return PairView(**columns)


def reason_error(estimate: PairEstimate, i: int, hw: Hardware, layer_name: str) -> ConfigError:
    """The :class:`ConfigError` hw_sim would raise for invalid pair ``i`` of ``estimate``
    (naming ``hw``'s value of the field that is too small or missing)."""
    code = int(estimate.reason.reshape(-1)[i])
    field, allowed = REASONS[code]
    if code in MISSING_ENGINE.values():
        return ConfigError(field, False if code == 7 else None, f"{allowed} in hardware "
                           f"'{hw.name}' [layer '{layer_name}']")
    given: Any = hw
    for part in field.split("."):
        given = getattr(given, part)
    need = float(estimate.need_words.reshape(-1)[i])
    if code == 3:
        return ConfigError(field, given, f"{allowed} ({need:g}) [layer '{layer_name}']")
    kib = 2 * need * hw.word_bits / 8 / 1024
    return ConfigError(field, given, f"at least {kib:.3g} KiB, so that {allowed} "
                       f"({need:g} words) [layer '{layer_name}']")


def estimate(workload: Workload, hw: Hardware) -> SimReport:
    """The analytical estimate of ``workload`` on ``hw``, in hw_sim's report types.

    Raises:
        ConfigError: the hardware cannot run a layer (as :func:`hw_sim.simulate.simulate`).
    """
    lanes = (hw.one_by_n.vector_lanes,) if hw.one_by_n is not None else (1,)
    layers = LayerBatch.from_layers(workload.layers, lanes=lanes)
    hws = HardwareBatch.from_hardware([hw])
    on_chip = weights_stay_on_chip(workload, hw)
    n = len(layers)
    est = evaluate(layers, hws, torch.arange(n), torch.zeros(n, dtype=torch.long),
                   torch.full((n,), on_chip))
    reports = []
    for i, layer in enumerate(workload.layers):
        if not bool(est.valid[i]):
            raise reason_error(est, i, hw, layer.name)
        ints = {name: round(float(getattr(est, name)[i])) for name in (
            "total_cycles", "compute_cycles", "stall_cycles", *COUNT_FIELDS, *TRAFFIC_FIELDS)}
        reports.append(LayerReport(
            name=layer.name,
            engine=ENGINE_NAMES[int(est.engine[i])],
            weight_format=layer.weight_format.type,
            utilization=float(est.utilization[i]),
            compute_energy_pj=float(est.compute_energy_pj[i]),
            sram_energy_pj=float(est.sram_energy_pj[i]),
            dram_energy_pj=float(est.dram_energy_pj[i]),
            latency_s=ints["total_cycles"] / hw.clock_hz,
            **ints,
        ))
    return SimReport(workload=workload.name, hardware=hw.name, source="accelerator_model",
                     clock_mhz=hw.clock_mhz, batch=workload.layers[0].batch,
                     layers=tuple(reports), weights_on_chip=on_chip,
                     static_power_mw=static_power(hw).as_dict())


__all__ = ["ENERGY_FIELDS", "PairEstimate", "estimate", "evaluate", "evaluate_grid"]
