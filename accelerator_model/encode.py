"""hw_sim layers and hardware configurations as columns of tensors.

The analytical model evaluates (layer, configuration) pairs in bulk: :class:`LayerBatch` holds
one row per layer (:class:`hw_sim.workload.Conv2d` / ``Linear``) and :class:`HardwareBatch`
one row per configuration (:class:`hw_sim.hardware.Hardware`), every field a float64 tensor.
Nothing here defines a layer or a configuration: both are read from the hw_sim objects (or,
for the accelerator search, from columns that :mod:`accelerator_model.space` fills directly
for configurations that :meth:`HardwareBatch.to_hardware` turns back into ``Hardware``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from hw_sim.engines import ENGINES
from hw_sim.engines.block_circulant import butterflies_per_fft
from hw_sim.hardware import DATAFLOWS, ActionEnergy, Hardware
from hw_sim.workload import Conv2d, Linear

LayerT = Conv2d | Linear

DTYPE = torch.float64

#: The engines, in the order of the ``fmt`` column's codes (hw_sim's registry order).
ENGINE_NAMES: tuple[str, ...] = tuple(ENGINES)

# 1xN lane counts whose row-group statistics every LayerBatch carries unless told otherwise.
DEFAULT_LANES = (*range(1, 33), 48, 64, 96, 128, 256)


def _col(values: Iterable[float]) -> Tensor:
    return torch.tensor(list(values), dtype=DTYPE)


def _cached(owner: object, key: tuple, make: Callable[[], Tensor]) -> Tensor:
    """A derived tensor of an immutable batch, made once per ``key``."""
    cache = owner.__dict__.setdefault("_derived", {})
    if key not in cache:
        cache[key] = make()
    return cache[key]


@dataclass(frozen=True)
class LayerBatch:
    """Layers, one row each (``[L]`` tensors unless noted).

    Attributes:
        names: layer names.
        fmt: the engine that runs the layer's format, an index into :data:`ENGINE_NAMES`.
        m, n, k: GEMM view per group (output pixels over the batch, output channels,
            reduction length ``taps * C / groups``; an N:M layer's the kept rows ``K'``).
        groups: independent GEMMs.
        taps: kernel taps ``kh * kw``.
        ifmap_gw: distinct input words per group (``ifmap_words // groups``).
        stored_weight_words: weight words in memory for the layer's format.
        metadata_words: N:M index words, loaded with the layer's first weights (0 otherwise).
        block: block-circulant block size ``b`` (0 otherwise).
        butterflies_per_fft: radix-2 butterflies of one ``b``-point FFT (0 otherwise).
        nb: 1xN block height ``n`` (0 otherwise).
        blocks: 1xN kept blocks, all groups (0 otherwise).
        block_rows: 1xN block rows per group ``N / n`` (0 otherwise).
        lanes: the 1xN lane counts ``V`` the row-group statistics below were taken for.
        rg_bmax: ``[L, len(lanes)]`` sum over row groups (all groups) of the largest kept-block
            count of a row in the group -- the lock-step pace of the vector units.
        rg_cols: ``[L, len(lanes)]`` mean over row groups of input columns with a kept block.
        rg_cols_max: ``[L, len(lanes)]`` largest such column count of a row group.
        rg_nonempty: ``[L, len(lanes)]`` mean over row groups of rows with a kept block.
        rg_nonempty_max: ``[L, len(lanes)]`` most rows with a kept block in one row group.
    """

    names: tuple[str, ...]
    fmt: Tensor
    m: Tensor
    n: Tensor
    k: Tensor
    groups: Tensor
    taps: Tensor
    ifmap_gw: Tensor
    stored_weight_words: Tensor
    metadata_words: Tensor
    block: Tensor
    butterflies_per_fft: Tensor
    nb: Tensor
    blocks: Tensor
    block_rows: Tensor
    lanes: tuple[int, ...]
    rg_bmax: Tensor
    rg_cols: Tensor
    rg_cols_max: Tensor
    rg_nonempty: Tensor
    rg_nonempty_max: Tensor

    PER_LAYER: ClassVar[tuple[str, ...]] = (
        "fmt", "m", "n", "k", "groups", "taps", "ifmap_gw", "stored_weight_words",
        "metadata_words", "block",
        "butterflies_per_fft", "nb", "blocks", "block_rows")

    def __len__(self) -> int:
        return len(self.names)

    def columns(self, dtype: torch.dtype = DTYPE) -> tuple[Tensor, Tensor]:
        """The per-layer columns stacked ``[len(PER_LAYER), L]`` and the 1xN row-group
        statistics stacked ``[len(ROW_GROUP_FIELDS), L * len(lanes)]`` (column
        ``layer * len(lanes) + lane_index``), rows in the order of the field names, in
        ``dtype`` (cached).  Stacked so that a batch of pairs is gathered by one
        ``index_select`` (half the time of one per column).
        """
        def make() -> tuple[Tensor, Tensor]:
            per_layer = torch.stack([getattr(self, name).to(dtype) for name in self.PER_LAYER])
            row_groups = torch.stack([getattr(self, name).reshape(-1).to(dtype)
                                      for name in ROW_GROUP_FIELDS])
            return per_layer, row_groups

        return _cached(self, ("columns", dtype), make)

    def lane_column(self) -> Tensor:
        """``[max(lanes) + 1]`` long: the row-group statistics column of each lane count
        (-1 for counts not encoded)."""
        def make() -> Tensor:
            table = torch.full((max(self.lanes) + 1,), -1, dtype=torch.long)
            table[list(self.lanes)] = torch.arange(len(self.lanes))
            return table

        return _cached(self, ("lanes",), make)

    @classmethod
    def from_layers(cls, layers: Sequence[LayerT], lanes: Iterable[int] = DEFAULT_LANES
                    ) -> LayerBatch:
        """Encode hw_sim layers; ``lanes``: the 1xN ``vector_lanes`` values to be evaluated."""
        lanes = tuple(sorted(set(int(v) for v in lanes)))
        rows: dict[str, list[float]] = {name: [] for name in cls.PER_LAYER}
        tables: list[np.ndarray] = []
        for layer in layers:
            fmt = layer.weight_format
            rows["fmt"].append(ENGINE_NAMES.index(fmt.engine))
            rows["m"].append(layer.gemm_m)
            rows["n"].append(layer.gemm_n)
            rows["k"].append(fmt.systolic_reduction(layer))
            rows["groups"].append(layer.groups)
            rows["taps"].append(layer.taps)
            rows["ifmap_gw"].append(layer.ifmap_words // layer.groups)
            rows["stored_weight_words"].append(layer.stored_weight_words)
            rows["metadata_words"].append(fmt.index_words(layer) if fmt.engine == "n_m" else 0)
            circulant = fmt.engine == "block_circulant"
            rows["block"].append(fmt.block_size if circulant else 0)  # type: ignore[attr-defined]
            rows["butterflies_per_fft"].append(
                butterflies_per_fft(fmt.block_size) if circulant else 0)  # type: ignore[attr-defined]
            if fmt.engine == "one_by_n":
                mask = layer.block_mask()
                rows["nb"].append(fmt.n)  # type: ignore[attr-defined]
                rows["blocks"].append(int(mask.sum()))
                rows["block_rows"].append(layer.gemm_n // fmt.n)  # type: ignore[attr-defined]
                tables.append(_row_group_stats(mask, layer.groups, lanes))
            else:
                rows["nb"].append(0)
                rows["blocks"].append(0)
                rows["block_rows"].append(0)
                tables.append(np.zeros((5, len(lanes))))
        table = torch.tensor(np.stack(tables) if tables else np.zeros((0, 5, len(lanes))),
                             dtype=DTYPE)
        return cls(
            names=tuple(layer.name for layer in layers),
            **{name: _col(values) for name, values in rows.items()},
            lanes=lanes,
            rg_bmax=table[:, 0], rg_cols=table[:, 1], rg_cols_max=table[:, 2],
            rg_nonempty=table[:, 3], rg_nonempty_max=table[:, 4],
        )


ROW_GROUP_FIELDS = ("rg_bmax", "rg_cols", "rg_cols_max", "rg_nonempty", "rg_nonempty_max")


def _row_group_stats(mask: np.ndarray, groups: int, lanes: Sequence[int]) -> np.ndarray:
    """``[5, len(lanes)]``: the row-group statistics of :class:`LayerBatch` for one 1xN mask
    (``[out_channels / n, C / groups]``; block rows of group ``g`` are consecutive)."""
    rows_per_group = mask.shape[0] // groups
    per_row = mask.sum(axis=1)
    out = np.zeros((5, len(lanes)))
    for j, v in enumerate(lanes):
        bmax = 0.0
        cols: list[int] = []
        nonempty: list[int] = []
        for g in range(groups):
            group = mask[g * rows_per_group:(g + 1) * rows_per_group]
            counts = per_row[g * rows_per_group:(g + 1) * rows_per_group]
            for start in range(0, rows_per_group, v):
                bmax += counts[start:start + v].max()
                cols.append(int(np.count_nonzero(group[start:start + v].any(axis=0))))
                nonempty.append(int(np.count_nonzero(counts[start:start + v])))
        out[:, j] = (bmax, np.mean(cols), max(cols), np.mean(nonempty), max(nonempty))
    return out


# Energy table fields, in ActionEnergy order.
ENERGY_FIELDS = tuple(f.name for f in fields(ActionEnergy))


@dataclass(frozen=True)
class HardwareBatch:
    """Hardware configurations, one row each (``[H]`` tensors).

    ``names`` may be empty (configurations generated by the accelerator search are named
    when they are turned back into ``Hardware``).  The other attributes mirror
    :class:`hw_sim.hardware.Hardware`: ``rows``/``cols``/``dataflow`` (index
    into :data:`DATAFLOWS`) of the PE array; buffer capacities in words (``*_words``, both
    halves); ``bandwidth`` in words/cycle (``inf``: unlimited); ``clock_hz``; ``word_bits``;
    ``keep_weights`` (``keep_weights_on_chip``); block-circulant engine fields ``bc_*``
    (``has_bc`` 0/1); 1xN engine fields ``nx_*`` (``has_nx`` 0/1); ``has_nm`` (``n_m``: the
    array skips N:M zero rows, 0/1); and the resolved energy
    table ``energy`` (``[H, len(ENERGY_FIELDS)]``, pJ).
    """

    names: tuple[str, ...]
    rows: Tensor
    cols: Tensor
    dataflow: Tensor
    ifmap_words: Tensor
    filter_words: Tensor
    ofmap_words: Tensor
    bandwidth: Tensor
    clock_hz: Tensor
    word_bits: Tensor
    keep_weights: Tensor
    has_bc: Tensor
    bc_fft_points: Tensor
    bc_fft_units: Tensor
    bc_ifft_units: Tensor
    bc_depth: Tensor
    bc_lanes: Tensor
    bc_buffer: Tensor
    has_nx: Tensor
    nx_lanes: Tensor
    nx_width: Tensor
    nx_decode: Tensor
    nx_acc_depth: Tensor
    has_nm: Tensor
    energy: Tensor

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "rows", "cols", "dataflow", "ifmap_words", "filter_words", "ofmap_words", "bandwidth",
        "clock_hz", "word_bits", "keep_weights", "has_bc", "bc_fft_points", "bc_fft_units",
        "bc_ifft_units", "bc_depth", "bc_lanes", "bc_buffer", "has_nx", "nx_lanes", "nx_width",
        "nx_decode", "nx_acc_depth", "has_nm")
    COLUMN_NAMES: ClassVar[tuple[str, ...]] = (*COLUMNS, *ENERGY_FIELDS)

    def __len__(self) -> int:
        return int(self.rows.numel())

    def columns(self, dtype: torch.dtype = DTYPE) -> Tensor:
        """The columns and the energy table's fields stacked ``[len(COLUMN_NAMES), H]``, rows
        in the order of :attr:`COLUMN_NAMES`, in ``dtype`` (cached)."""
        def make() -> Tensor:
            return torch.cat([torch.stack([getattr(self, name).to(dtype)
                                           for name in self.COLUMNS]),
                              self.energy.t().to(dtype)])

        return _cached(self, ("columns", dtype), make)

    @classmethod
    def from_hardware(cls, hws: Sequence[Hardware]) -> HardwareBatch:
        """Encode hw_sim hardware configurations."""
        cols: dict[str, list[float]] = {name: [] for name in cls.COLUMNS}
        energy = []
        for hw in hws:
            for name, value in hardware_row(hw).items():
                cols[name].append(value)
            table = hw.energy_per_action()
            energy.append([getattr(table, f) for f in ENERGY_FIELDS])
        return cls(names=tuple(hw.name for hw in hws),
                   **{name: _col(values) for name, values in cols.items()},
                   energy=torch.tensor(energy, dtype=DTYPE).reshape(len(hws),
                                                                    len(ENERGY_FIELDS)))

    def index(self, idx: Tensor) -> HardwareBatch:
        """The configurations at ``idx`` (a ``[P]`` long tensor), in that order."""
        return HardwareBatch(
            names=tuple(self.names[i] for i in idx.tolist()) if self.names else (),
            **{name: getattr(self, name)[idx] for name in self.COLUMNS},
            energy=self.energy[idx])

    @classmethod
    def concat(cls, parts: Sequence[HardwareBatch]) -> HardwareBatch:
        return cls(names=tuple(n for p in parts for n in p.names),
                   **{name: torch.cat([getattr(p, name) for p in parts]) for name in cls.COLUMNS},
                   energy=torch.cat([p.energy for p in parts]))


def hardware_row(hw: Hardware) -> dict[str, float]:
    """The :attr:`HardwareBatch.COLUMNS` values of one configuration."""
    bc = hw.block_circulant
    nx = hw.one_by_n
    bw = hw.dram.bandwidth_words_per_cycle
    return {
        "rows": hw.pe_array.rows, "cols": hw.pe_array.cols,
        "dataflow": DATAFLOWS.index(hw.pe_array.dataflow),
        "ifmap_words": hw.sram_words("ifmap"), "filter_words": hw.sram_words("filter"),
        "ofmap_words": hw.sram_words("ofmap"),
        "bandwidth": math.inf if bw is None else bw,
        "clock_hz": hw.clock_hz, "word_bits": hw.word_bits,
        "keep_weights": float(hw.keep_weights_on_chip),
        "has_bc": float(bc is not None),
        "bc_fft_points": bc.fft_points if bc else 0, "bc_fft_units": bc.fft_units if bc else 1,
        "bc_ifft_units": bc.ifft_units if bc else 1,
        "bc_depth": bc.fft_pipeline_depth if bc else 1,
        "bc_lanes": bc.complex_mac_lanes if bc else 1,
        "bc_buffer": bc.stage_buffer_depth if bc else 1,
        "has_nx": float(nx is not None),
        "nx_lanes": nx.vector_lanes if nx else 1, "nx_width": nx.lane_width if nx else 1,
        "nx_decode": nx.index_decode_cycles if nx else 0,
        "nx_acc_depth": nx.accumulator_depth if nx else 1,
        "has_nm": float(hw.n_m),
    }
