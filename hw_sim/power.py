"""Static (leakage) power of a hardware configuration, per component, in mW.

Counts come from the engine registry (:data:`hw_sim.resources.ENGINE_UNITS`: each engine's
multipliers and adders) and the buffer sizes; powers per unit from the hardware's
:class:`~hw_sim.hardware.StaticPowerTable` (defaults: Aladdin's 40 nm library for logic,
CACTI 7 at 45 nm for SRAM, DDR3 datasheet standby currents for DRAM; see there).
Static energy of a run is this power times its latency.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

from hw_sim.cacti_sram_45nm import SRAM_LEAKAGE_MW
from hw_sim.hardware import Hardware
from hw_sim.resources import SCALAR_OPS, columns_of, fpga_resources_of

# Aladdin 40 nm, 1 ns, integer units (harvard-acc/ALADDIN common/power_func.h), taken as
# 32-bit: the file does not state their width.
ALADDIN_MUL32_MW = 7.786052e-02
ALADDIN_ADD32_MW = 2.249908e-03
# Registers a PE holds: its streamed input, its stationary operand and the partial sum it
# passes on, one word each.
PE_REGISTER_WORDS = 3


@dataclass(frozen=True, slots=True)
class StaticPower:
    """Static power per component, mW."""

    pe_array_mw: float
    fft_engine_mw: float
    vector_engine_mw: float
    sram_mw: float
    dram_interface_mw: float

    @property
    def total_mw(self) -> float:
        return (self.pe_array_mw + self.fft_engine_mw + self.vector_engine_mw + self.sram_mw
                + self.dram_interface_mw)

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "total_mw": self.total_mw}


def sram_leakage_mw(size_kib: float) -> float:
    """Leakage of one SRAM buffer of ``size_kib`` (mW): CACTI's table, linear in size between
    its points (leakage grows with the cell count) and proportional beyond its ends."""
    points = sorted(SRAM_LEAKAGE_MW.items())
    if size_kib <= points[0][0]:
        return points[0][1] * size_kib / points[0][0]
    for (s0, p0), (s1, p1) in itertools.pairwise(points):
        if size_kib <= s1:
            return p0 + (p1 - p0) * (size_kib - s0) / (s1 - s0)
    return points[-1][1] * size_kib / points[-1][0]


def static_power(hw: Hardware) -> StaticPower:
    """Static power of ``hw``'s components (mW): logic from its multipliers, adders and
    registers, each SRAM buffer by its size, the off-chip DRAM's background as a constant."""
    table = hw.energy.static
    bits = hw.word_bits
    mult = table.multiplier_mw if table.multiplier_mw is not None \
        else ALADDIN_MUL32_MW * (bits / 32) ** 2
    add = table.adder_mw if table.adder_mw is not None else ALADDIN_ADD32_MW * bits / 32
    reg_word = table.register_bit_mw * bits
    units = fpga_resources_of(columns_of(hw), SCALAR_OPS).units

    def logic(name: str) -> float:
        return units[name].multipliers * mult + units[name].adders * add

    pes = hw.pe_array.rows * hw.pe_array.cols
    vector = logic("one_by_n")
    if hw.one_by_n is not None:
        nx = hw.one_by_n
        vector += nx.vector_lanes * nx.lane_width * nx.accumulator_depth * reg_word
    buffers_kib = [getattr(hw.sram_kb, op) for op in ("ifmap", "filter", "ofmap")]
    sram = (sum(buffers_kib) * table.sram_mw_per_kib if table.sram_mw_per_kib is not None
            else sum(sram_leakage_mw(kib) for kib in buffers_kib))
    return StaticPower(
        pe_array_mw=logic("systolic") + pes * PE_REGISTER_WORDS * reg_word,
        fft_engine_mw=logic("block_circulant"),
        vector_engine_mw=vector,
        sram_mw=sram,
        dram_interface_mw=table.dram_interface_mw,
    )
