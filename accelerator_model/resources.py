"""Resources of hardware configurations: FPGA DSP slices and 18 Kb block RAMs, ASIC PE count,
SRAM and area -- batched over :class:`~accelerator_model.encode.HardwareBatch` rows, and
checked against the budget of a :class:`hw_sim.hardware.Hardware` (``budget.fpga`` /
``budget.asic``).

Sources (see docs/accelerator_model.md):

* DSP: one multiplier of ``q``-bit operands takes ``q / 16`` DSP slices -- the rule of
  Auto-NBA's FPGA template (GATECH-EIC/Auto-NBA, ``analytical_model/analytical_prediction.py``,
  ``resource_consumption``: ``dsp = parallelism * quant / 16``): a DSP48 takes one 16-bit
  product, or two 8-bit products sharing an operand.  A complex multiply-accumulate takes 4
  real multipliers (hw_sim's energy table: 4 mult + 4 add); an FFT unit that starts one
  ``P``-point transform a cycle is ``(P / 2) log2 P`` butterflies of one complex multiplier.
* BRAM: each operand buffer is split into as many banks as words the engines read from it per
  cycle (one per array row or column, vector unit or FFT input), as in Auto-NBA's template;
  a bank of ``d`` words of ``w`` bits takes the fewest RAMB18E1 primitives over the block's
  aspect ratios 16K x 1, 8K x 2, 4K x 4, 2K x 9, 1K x 18 and 512 x 36 (Xilinx UG473,
  7 Series FPGAs Memory Resources).  ``sram_kb`` already counts both halves of a
  double-buffered buffer.
* ASIC area (45 nm): multiplier and adder areas from M. Horowitz, "Computing's energy problem"
  (ISSCC 2014): 8-bit multiply 282 um^2, add 36 um^2; 32-bit multiply 3495 um^2, add 137 um^2,
  interpolated as a power law in the width; a PE is one multiplier and one adder (registers and
  control not counted).  SRAM: the 0.346 um^2 six-transistor cell of Intel's 45 nm process
  (Mistry et al., IEDM 2007) over an assumed 70 % array efficiency.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from accelerator_model.encode import HardwareBatch
from hw_sim.hardware import Hardware
from hw_sim.resources import fft_butterflies, fpga_resources_of

MULT_UM2 = {8: 282.0, 32: 3495.0}
ADD_UM2 = {8: 36.0, 32: 137.0}
SRAM_CELL_UM2 = 0.346
SRAM_ARRAY_EFFICIENCY = 0.7


@dataclass(frozen=True, slots=True)
class Resources:
    """Resources of each configuration (``[H]`` float64 tensors).

    Attributes:
        dsp: FPGA DSP slices.
        bram18k: FPGA 18 Kb block RAMs.
        pe_count: PEs of the systolic array.
        multipliers: real multipliers of all engines (array, complex MAC lanes, FFT units,
            1xN vector lanes).
        sram_kb: on-chip buffer KiB (all three operands, both halves).
        area_mm2: ASIC area estimate (45 nm), mm^2.
    """

    dsp: Tensor
    bram18k: Tensor
    pe_count: Tensor
    multipliers: Tensor
    sram_kb: Tensor
    area_mm2: Tensor


def _per_value(column: Tensor, fn: Callable[[float], float]) -> Tensor:
    """``fn`` of each element, computed once per distinct value (columns hold a few)."""
    values, inverse = torch.unique(column, return_inverse=True)
    return torch.tensor([fn(v) for v in values.tolist()], dtype=column.dtype)[inverse]


def _power_law(table: dict[int, float], bits: Tensor) -> Tensor:
    (b0, a0), (b1, a1) = sorted(table.items())
    exponent = math.log(a1 / a0) / math.log(b1 / b0)
    return _per_value(bits, lambda b: a0 * (b / b0) ** exponent)


class _TorchOps:
    """:class:`hw_sim.resources.Ops` on ``[H]`` tensors."""

    maximum = staticmethod(torch.maximum)
    minimum = staticmethod(torch.minimum)
    where = staticmethod(torch.where)
    ceil = staticmethod(torch.ceil)

    @staticmethod
    def log2(a: Tensor) -> Tensor:
        return _per_value(a, math.log2)

    @staticmethod
    def clamp_min(a: Tensor, low: float) -> Tensor:
        return torch.clamp(a, min=low)


TORCH_OPS = _TorchOps()


def resources(hws: HardwareBatch) -> Resources:
    """Resources of every configuration of ``hws``: multipliers, banks, DSP and BRAM from
    hw_sim's engine registry (:data:`hw_sim.resources.ENGINE_UNITS`), the one definition
    hw_sim's own :func:`hw_sim.resources.fpga_resources` uses."""
    bits = hws.word_bits
    rows, cols = hws.rows, hws.cols
    fpga = fpga_resources_of(hws, TORCH_OPS)
    multipliers, dsp, bram = fpga.multipliers, fpga.dsp, fpga.bram18k
    bc_mults = fpga.units["block_circulant"].multipliers
    nx_mults = fpga.units["one_by_n"].multipliers
    butterflies = fft_butterflies(hws, TORCH_OPS)
    has_bc = hws.has_bc

    sram_bits = (hws.ifmap_words + hws.filter_words + hws.ofmap_words) * bits
    mult_um2 = _power_law(MULT_UM2, bits)
    add_um2 = _power_law(ADD_UM2, bits)
    logic_um2 = (rows * cols * (mult_um2 + add_um2)
                 + bc_mults * (mult_um2 + add_um2)  # 4 mult + 4 add per complex MAC
                 + has_bc * 2 * butterflies * (hws.bc_fft_units + hws.bc_ifft_units) * add_um2
                 + nx_mults * (mult_um2 + add_um2))
    area_mm2 = (logic_um2 + sram_bits * SRAM_CELL_UM2 / SRAM_ARRAY_EFFICIENCY) * 1e-6
    return Resources(dsp=dsp, bram18k=bram, pe_count=rows * cols, multipliers=multipliers,
                     sram_kb=sram_bits / 8 / 1024, area_mm2=area_mm2)


BUDGET_REASONS = {
    1: ("budget.fpga.dsp", "DSP slices within the FPGA budget"),
    2: ("budget.fpga.bram18k", "18 Kb block RAMs within the FPGA budget"),
    3: ("budget.asic.area_mm2", "area within the ASIC budget"),
}


def over_budget(res: Resources, hw: Hardware) -> Tensor:
    """Per configuration: 0 within ``hw.budget`` (or no budget), else a key of
    :data:`BUDGET_REASONS` (the first resource over)."""
    reason = torch.zeros_like(res.dsp)
    budget = hw.budget
    if budget is None:
        return reason
    checks = []
    if budget.fpga is not None:
        checks += [(res.dsp > budget.fpga.dsp, 1), (res.bram18k > budget.fpga.bram18k, 2)]
    if budget.asic is not None:
        checks.append((res.area_mm2 > budget.asic.area_mm2, 3))
    for failed, code in reversed(checks):
        reason = torch.where(failed, float(code), reason)
    return reason


def hardware_resources(hw: Hardware) -> dict[str, float]:
    """The resources of one configuration, as plain numbers (units in the keys)."""
    res = resources(HardwareBatch.from_hardware([hw]))
    return {"dsp": float(res.dsp[0]), "bram18k": float(res.bram18k[0]),
            "pe_count": float(res.pe_count[0]), "multipliers": float(res.multipliers[0]),
            "sram_kb": float(res.sram_kb[0]), "area_mm2": float(res.area_mm2[0])}


def budget_fit(hw: Hardware) -> bool | None:
    """Whether ``hw`` fits its own budget (``None`` without a budget)."""
    if hw.budget is None:
        return None
    return bool(over_budget(resources(HardwareBatch.from_hardware([hw])), hw)[0] == 0)
