"""What each engine is made of, and the FPGA resources that follow: one definition for hw_sim
and the analytical model.

Each engine of :data:`hw_sim.engines.ENGINES` that adds hardware declares, in
:data:`ENGINE_UNITS`, its real multipliers and adders and how many words a cycle it reads from
or writes to each buffer (the buffer's banks).  The formulas are written once over *columns*
(an object with :class:`accelerator_model.encode.HardwareBatch`'s attribute names) and an
:class:`Ops` (how to take a maximum, a ceiling...), so the same code gives plain numbers for one
:class:`~hw_sim.hardware.Hardware` here (:func:`fpga_resources`) and ``[H]`` tensors for a
batch in ``accelerator_model.resources``.

Sources (as in docs/accelerator_model.md):

* DSP: one multiplier of ``q``-bit operands takes ``q / 16`` DSP slices (Auto-NBA's FPGA
  template, ``resource_consumption``: ``dsp = parallelism * quant / 16``).  A complex
  multiply-accumulate is 4 real multipliers and 4 adders; a radix-2 butterfly 4 multipliers and
  6 adders, and an FFT unit that starts one ``P``-point transform a cycle has
  ``(P / 2) log2 P`` of them.
* BRAM: a buffer is split into as many banks as words the engines move through it per cycle;
  a bank of ``d`` words of ``w`` bits takes the fewest RAMB18E1 primitives over the aspect
  ratios of Xilinx UG473 (16K x 1 ... 512 x 36).  ``sram_kb`` counts both halves already.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from hw_sim.hardware import DATAFLOW_INDEX, Hardware

# RAMB18E1 aspect ratios (width bits, depth words), UG473.
BRAM18_SHAPES = ((1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512))
OPERANDS = ("ifmap", "filter", "ofmap")


class Ops(Protocol):
    """Element-wise operations on numbers or tensors."""

    def maximum(self, a: Any, b: Any) -> Any: ...
    def minimum(self, a: Any, b: Any) -> Any: ...
    def where(self, condition: Any, a: Any, b: Any) -> Any: ...
    def ceil(self, a: Any) -> Any: ...
    def log2(self, a: Any) -> Any: ...
    def clamp_min(self, a: Any, low: float) -> Any: ...


class ScalarOps:
    """:class:`Ops` on Python numbers."""

    maximum = staticmethod(max)
    minimum = staticmethod(min)

    @staticmethod
    def where(condition: Any, a: Any, b: Any) -> Any:
        return a if condition else b

    @staticmethod
    def ceil(a: Any) -> float:
        return float(math.ceil(a))

    @staticmethod
    def log2(a: Any) -> float:
        return math.log2(a)

    @staticmethod
    def clamp_min(a: Any, low: float) -> Any:
        return max(a, low)


SCALAR_OPS = ScalarOps()


@dataclass(frozen=True, slots=True)
class Units:
    """An engine's datapath: real multipliers, adders, and words per cycle per buffer."""

    multipliers: Any
    adders: Any
    ports: dict[str, Any]


def _systolic(c: Any, ops: Ops) -> Units:
    is_ = c.dataflow == DATAFLOW_INDEX["is"]
    pes = c.rows * c.cols
    # The stationary and streamed operands enter at the array's edges: ws/os stream the
    # ifmap along the rows and the filter along the columns, is the other way round.
    return Units(pes, pes, {"ifmap": ops.where(is_, c.cols, c.rows),
                            "filter": ops.where(is_, c.rows, c.cols), "ofmap": c.cols})


def fft_butterflies(c: Any, ops: Ops) -> Any:
    """Radix-2 butterflies of one FFT unit: ``(P / 2) log2 P``."""
    points = ops.clamp_min(c.bc_fft_points, 2)
    return points / 2 * ops.log2(points)


def _block_circulant(c: Any, ops: Ops) -> Units:
    points = ops.clamp_min(c.bc_fft_points, 2)
    butterflies = fft_butterflies(c, ops) * (c.bc_fft_units + c.bc_ifft_units)
    on = c.has_bc
    return Units(on * (4 * c.bc_lanes + 4 * butterflies), on * (4 * c.bc_lanes + 6 * butterflies),
                 {"ifmap": on * c.bc_fft_units * points, "filter": on * c.bc_lanes,
                  "ofmap": on * c.bc_ifft_units * points})


def _one_by_n(c: Any, ops: Ops) -> Units:
    on = c.has_nx
    lanes = on * c.nx_lanes
    return Units(lanes * c.nx_width, lanes * c.nx_width,
                 {"ifmap": lanes, "filter": lanes, "ofmap": lanes})


#: Engine name (``hw_sim.engines.ENGINES``) -> its units.  The N:M engine is the PE array
#: skipping rows: it adds no units.
ENGINE_UNITS: dict[str, Callable[[Any, Ops], Units]] = {
    "systolic": _systolic, "block_circulant": _block_circulant, "one_by_n": _one_by_n,
}


def bram_per_bank(words: Any, bits: Any, ops: Ops) -> Any:
    """RAMB18E1 primitives for a bank of ``words`` words of ``bits`` bits."""
    best = None
    for width, depth in BRAM18_SHAPES:
        count = ops.ceil(bits / width) * ops.ceil(words / depth)
        best = count if best is None else ops.minimum(best, count)
    return best


@dataclass(frozen=True, slots=True)
class FPGAResources:
    """FPGA resources of a configuration (numbers, or ``[H]`` tensors for a batch).

    Attributes:
        dsp: DSP slices.
        bram18k: 18 Kb block RAMs.
        multipliers: real multipliers of all engines.
        banks: banks of each buffer (words per cycle through it).
        units: each engine's :class:`Units`.
    """

    dsp: Any
    bram18k: Any
    multipliers: Any
    banks: dict[str, Any]
    units: dict[str, Units]


def fpga_resources_of(c: Any, ops: Ops) -> FPGAResources:
    """:class:`FPGAResources` of the configuration(s) ``c`` (columns with
    ``HardwareBatch``'s names, numbers or tensors)."""
    units = {name: unit(c, ops) for name, unit in ENGINE_UNITS.items()}
    multipliers = sum((u.multipliers for u in units.values()), start=0 * c.rows)
    banks = {}
    for operand in OPERANDS:
        count = units["systolic"].ports[operand]
        for name, unit in units.items():
            if name != "systolic":
                count = ops.maximum(count, unit.ports[operand])
        banks[operand] = count
    bram = 0 * c.rows
    for operand in OPERANDS:
        words = getattr(c, f"{operand}_words")
        bram = bram + banks[operand] * bram_per_bank(ops.ceil(words / banks[operand]),
                                                     c.word_bits, ops)
    dsp = ops.ceil(multipliers * c.word_bits / 16)
    return FPGAResources(dsp, bram, multipliers, banks, units)


@dataclass(frozen=True, slots=True)
class _Columns:
    rows: float
    cols: float
    dataflow: int
    word_bits: float
    ifmap_words: float
    filter_words: float
    ofmap_words: float
    has_bc: float
    bc_fft_points: float
    bc_fft_units: float
    bc_ifft_units: float
    bc_lanes: float
    has_nx: float
    nx_lanes: float
    nx_width: float


def columns_of(hw: Hardware) -> _Columns:
    """The columns :data:`ENGINE_UNITS` reads, for one configuration (absent engines: the
    same placeholder values the analytical model's encoding uses)."""
    bc, nx = hw.block_circulant, hw.one_by_n
    return _Columns(
        rows=float(hw.pe_array.rows), cols=float(hw.pe_array.cols),
        dataflow=DATAFLOW_INDEX[hw.pe_array.dataflow], word_bits=float(hw.word_bits),
        ifmap_words=float(hw.sram_words("ifmap")), filter_words=float(hw.sram_words("filter")),
        ofmap_words=float(hw.sram_words("ofmap")),
        has_bc=float(bc is not None), bc_fft_points=float(bc.fft_points if bc else 0),
        bc_fft_units=float(bc.fft_units if bc else 1),
        bc_ifft_units=float(bc.ifft_units if bc else 1),
        bc_lanes=float(bc.complex_mac_lanes if bc else 1),
        has_nx=float(nx is not None), nx_lanes=float(nx.vector_lanes if nx else 1),
        nx_width=float(nx.lane_width if nx else 1))


def fpga_resources(hw: Hardware) -> FPGAResources:
    """DSP slices and 18 Kb block RAMs of ``hw`` (plain numbers), from :data:`ENGINE_UNITS`."""
    return fpga_resources_of(columns_of(hw), SCALAR_OPS)
