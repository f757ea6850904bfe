"""Hardware description: the accelerator a workload runs on.

This is the one description of a hardware configuration in the project; the simulator, the
analytical model and the accelerator search all take this object.  It is loaded from YAML
(or from a SCALE-Sim ``.cfg`` file: :func:`hw_sim.files.load_hardware`).

Units: sizes in KiB (1024 bytes) unless a name says words; a word is ``word_bits`` wide;
bandwidth in words per cycle; clock in MHz; energy in pJ.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, field_validator, model_validator

from a3cs_common.errors import ConfigError
from a3cs_common.schema import FrozenModel

Dataflow = Literal["ws", "os", "is"]
#: Dataflows in the order the analytical model encodes them (``HardwareBatch.dataflow``).
DATAFLOWS: tuple[str, ...] = ("ws", "is", "os")
DATAFLOW_INDEX: dict[str, int] = {name: index for index, name in enumerate(DATAFLOWS)}
MemoryModel = Literal["default", "scalesim"]

#: What each memory model is, for messages and reports.
MEMORY_MODELS: dict[str, str] = {
    "default": "hw_sim's double-buffered prefetch: one DRAM channel shared by all operands, "
               "each step's inputs fetched during the previous step",
    "scalesim": "SCALE-Sim 3.0.0's USER-bandwidth memory system: fixed-chunk prefetch per "
                "operand, padding fetched, late refills counted twice",
}


class PEArray(FrozenModel):
    """Systolic array of multiply-accumulate PEs (runs dense layers)."""

    rows: PositiveInt
    cols: PositiveInt
    dataflow: Dataflow = Field(description="ws (weight-), os (output-) or is (input-stationary)")


class SRAMSizes(FrozenModel):
    """On-chip buffer per operand, in KiB.  Each is double-buffered: one half serves the
    compute while the other is filled from (or drained to) DRAM."""

    ifmap: PositiveFloat
    filter: PositiveFloat
    ofmap: PositiveFloat


class DRAM(FrozenModel):
    """Off-chip memory: one channel shared by reads and writes."""

    bandwidth_words_per_cycle: PositiveInt | None = Field(
        default=None, description="words per cycle; null means unlimited (transfers take no time)"
    )


class BlockCirculantEngine(FrozenModel):
    """FFT-based engine for block-circulant layers (CirCNN / GST style).

    Three pipelined stages per input vector: ``q`` input FFTs, ``(b/2+1) * p * q`` complex
    multiply-accumulates against precomputed weight spectra, ``p`` output IFFTs.
    """

    fft_points: PositiveInt = Field(description="largest FFT a unit computes; a power of two")
    fft_units: PositiveInt = Field(description="forward-FFT units, each starts one FFT a cycle")
    ifft_units: PositiveInt = Field(description="inverse-FFT units, each starts one IFFT a cycle")
    fft_pipeline_depth: PositiveInt = Field(description="cycles from an FFT's start to its result")
    complex_mac_lanes: PositiveInt = Field(description="complex multiply-accumulates per cycle")
    stage_buffer_depth: PositiveInt = Field(
        default=2, description="vectors each inter-stage buffer holds (back-pressure beyond)"
    )

    @field_validator("fft_points")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value < 2 or value & (value - 1):
            raise ConfigError("", value, "a power of two >= 2")
        return value


class OneByNEngine(FrozenModel):
    """Vector engine for 1xN block-sparse layers.

    ``vector_lanes`` units each own one block row (``n`` output channels) and walk its nonzero
    blocks in a BSR-like stream: decode the block's input-channel index, then for each kernel
    tap and output pixel multiply one activation by the ``n`` weights on a ``lane_width``-wide
    vector FMA.  Units of a row group run in lock-step, so rows with more blocks set the pace.
    """

    vector_lanes: PositiveInt = Field(description="vector units working on block rows at once")
    lane_width: PositiveInt = Field(description="V: multipliers per vector unit")
    index_decode_cycles: int = Field(default=1, ge=0, description="cycles to decode one block index")
    accumulator_depth: PositiveInt = Field(
        default=64, description="output pixels a unit accumulates at once (accumulator registers)"
    )


# One x64 rank of eight DDR3-1600 x8 devices in precharge standby: IDD2N 32 mA at VDD 1.5 V
# each (Micron MT41J512M8, as gem5's DDR3_1600_8x8 tabulates it), in mW.
DDR3_RANK_STANDBY_MW = 8 * 32.0 * 1.5


class EnergyTable(FrozenModel):
    """Energy per action.  Unset values take defaults for the hardware's ``word_bits``.

    Defaults (45 nm, M. Horowitz, "Computing's energy problem", ISSCC 2014): 8-bit integer
    mult 0.2 pJ / add 0.03 pJ; 16-bit float mult 1.1 / add 0.4; 32-bit float mult 3.7 / add
    0.9; other widths scale the 8-bit figures (mult ~ bits^2, add ~ bits).  SRAM reads of a
    64-bit word: 10 pJ (8 KB), 20 pJ (32 KB), 100 pJ (1 MB), interpolated in log size; DRAM
    640 pJ per 32-bit access (the same source's table as quoted by Han et al., EIE, ISCA 2016).
    """

    mac_pj: PositiveFloat | None = Field(default=None, description="one multiply-accumulate")
    complex_mac_pj: PositiveFloat | None = Field(
        default=None, description="one complex multiply-accumulate (4 mult + 4 add)"
    )
    fft_butterfly_pj: PositiveFloat | None = Field(
        default=None, description="one radix-2 butterfly (4 mult + 6 add)"
    )
    index_decode_pj: PositiveFloat | None = Field(
        default=None, description="decoding one sparse block index (one add)"
    )
    sram_read_pj_per_byte: dict[float, PositiveFloat] = Field(
        default_factory=lambda: {8.0: 1.25, 32.0: 2.5, 1024.0: 12.5},
        description="SRAM size in KiB -> pJ per byte read; interpolated in log size",
    )
    sram_write_pj_per_byte: dict[float, PositiveFloat] = Field(
        default_factory=lambda: {8.0: 1.25, 32.0: 2.5, 1024.0: 12.5},
        description="SRAM size in KiB -> pJ per byte written",
    )
    dram_pj_per_byte: PositiveFloat = Field(default=160.0, description="pJ per byte moved")
    static: StaticPowerTable = Field(
        default_factory=lambda: StaticPowerTable(),
        description="static (leakage) power per component, see StaticPowerTable")


class StaticPowerTable(FrozenModel):
    """Static (leakage) power of the hardware's components, in mW while it is powered.

    Logic defaults: Aladdin's 40 nm function-unit library at 1 ns (Y. S. Shao et al.,
    "Aladdin", ISCA 2014; harvard-acc/ALADDIN ``common/power_func.h``, "normalized to a
    commercial 40g"): integer multiplier 7.786e-2 mW (``MUL_1ns_leakage_power``), integer
    adder 2.250e-3 mW (``ADD_1ns_leakage_power``), one register bit 7.395e-5 mW
    (``REG_1ns_leakage_power``, per bit).  The file does not state the units' width; they are
    taken as 32-bit (an assumption) and scaled as the energies are (multiplier ~ bits^2,
    adder ~ bits).

    SRAM default: CACTI 7.0 at 45 nm (the CACTI node nearest 40 nm), one bank per buffer,
    64-bit words, ITRS high-performance cells, 360 K: ``hw_sim.cacti_sram_45nm``, generated by
    ``experiments/cacti_sram.py`` (22.4 mW for 16 KiB, 84.0 mW for 64 KiB: about 1.3 mW a
    KiB); each operand buffer is looked up by its size.

    DRAM default: the off-chip DRAM's background power while it is powered and idle
    (precharge standby, IDD2N x VDD per device; DRAMPower's and Micron's TN-41-01 background
    term): one x64 rank of eight DDR3-1600 x8 devices, the ZC706's memory type, with Micron
    MT41J512M8's datasheet currents as gem5 tabulates them (``DDR3_1600_8x8``: IDD2N 32 mA,
    VDD 1.5 V), 8 x 32 mA x 1.5 V = 384 mW.  Set it to 0 to count only the chip.
    """

    multiplier_mw: PositiveFloat | None = Field(
        default=None, description="one word-wide multiplier; default: Aladdin's 32-bit value "
        "scaled by (word_bits / 32)^2")
    adder_mw: PositiveFloat | None = Field(
        default=None, description="one word-wide adder; default: Aladdin's 32-bit value scaled "
        "by word_bits / 32")
    register_bit_mw: PositiveFloat = Field(default=7.395312e-05,
                                           description="one register bit (Aladdin, 40 nm)")
    sram_mw_per_kib: float | None = Field(
        default=None, ge=0, description="SRAM leakage per KiB of buffer; default: CACTI 7 at "
        "45 nm by each buffer's size (hw_sim.cacti_sram_45nm)")
    dram_interface_mw: float = Field(
        default=DDR3_RANK_STANDBY_MW, ge=0, description="off-chip DRAM background (precharge "
        "standby) power; default: one x64 rank of DDR3-1600 x8 devices, 384 mW")


EnergyTable.model_rebuild()


class FPGABudget(FrozenModel):
    """FPGA resources available (e.g. a ZC706-class XC7Z045: 900 DSP, 1090 BRAM18)."""

    dsp: PositiveInt
    bram18k: PositiveInt


class ASICBudget(FrozenModel):
    """ASIC budget."""

    area_mm2: PositiveFloat


class Budget(FrozenModel):
    """Resource budget the accelerator must fit (used by the accelerator model and search)."""

    fpga: FPGABudget | None = None
    asic: ASICBudget | None = None


class Hardware(FrozenModel):
    """One accelerator configuration."""

    name: str = Field(min_length=1)
    clock_mhz: PositiveFloat = Field(description="clock frequency in MHz")
    word_bits: int = Field(default=8, ge=1, le=64, description="width of one data word")
    pe_array: PEArray
    sram_kb: SRAMSizes
    dram: DRAM = Field(default_factory=DRAM)
    block_circulant: BlockCirculantEngine | None = None
    one_by_n: OneByNEngine | None = None
    n_m: bool = Field(
        default=False,
        description="the PE array skips the zero weights of N:M layers (SCALE-Sim v3's "
        "layer-wise sparsity, SparsitySupport true): an N:M layer's reduction shrinks from K "
        "to the weights kept per output channel",
    )
    keep_weights_on_chip: bool = Field(
        default=False,
        description="when all of a network's weights fit the filter buffer, load them once and "
        "keep them there between inferences (the steady state of an agent acting step after "
        "step): no weight traffic per inference",
    )
    memory_model: MemoryModel = Field(
        default="default",
        description="how DRAM transfers turn into stalls: 'default' (hw_sim's double-buffered "
        "prefetch) or 'scalesim' (SCALE-Sim 3.0.0's USER-bandwidth memory system, reproduced "
        "cycle for cycle on dense layers; see docs/hw_sim_validation.md)",
    )
    energy: EnergyTable = Field(default_factory=EnergyTable)
    budget: Budget | None = None

    @model_validator(mode="after")
    def _scalesim_representable(self) -> Hardware:
        if self.memory_model != "scalesim":
            return self
        # SCALE-Sim reads integer kB of one-word bytes and has no weight residency across
        # inferences or N:M datapath in its USER-bandwidth flow, so these have no SCALE-Sim
        # counterpart whose numbers could be reproduced.
        for operand in ("ifmap", "filter", "ofmap"):
            words = self.sram_words(operand)  # type: ignore[arg-type]
            if words % 1024:
                raise ConfigError(
                    f"sram_kb.{operand}", getattr(self.sram_kb, operand),
                    f"a size of whole 1024-word blocks with memory_model 'scalesim' (SCALE-Sim "
                    f"reads integer kB of one-word bytes; this buffer holds {words} words)")
        if self.keep_weights_on_chip:
            raise ConfigError("keep_weights_on_chip", True, "false with memory_model "
                              "'scalesim' (SCALE-Sim loads every layer's weights per run)")
        if self.n_m:
            raise ConfigError("n_m", True, "false with memory_model 'scalesim' (SCALE-Sim's "
                              "sparse flow is reproduced for compute cycles only)")
        return self

    # Derived sizes -----------------------------------------------------------------------

    @property
    def word_bytes(self) -> float:
        return self.word_bits / 8

    def sram_words(self, operand: Literal["ifmap", "filter", "ofmap"]) -> int:
        """Capacity of one operand buffer in words (both halves)."""
        kib = getattr(self.sram_kb, operand)
        return int(kib * 1024 * 8 // self.word_bits)

    def sram_half_words(self, operand: Literal["ifmap", "filter", "ofmap"]) -> int:
        """Capacity of one half of a double-buffered operand buffer, in words."""
        return self.sram_words(operand) // 2

    @property
    def clock_hz(self) -> float:
        return self.clock_mhz * 1e6

    def energy_per_action(self) -> ActionEnergy:
        """The energy table resolved for this hardware's word width and buffer sizes."""
        return _resolve_energy(self)


# ------------------------------------------------------------------------------------------
# Energy


@dataclass(frozen=True, slots=True)
class ActionEnergy:
    """Energy of each counted action on one hardware configuration, in pJ."""

    mac_pj: float
    complex_mac_pj: float
    fft_butterfly_pj: float
    index_decode_pj: float
    ifmap_sram_read_pj: float
    filter_sram_read_pj: float
    ofmap_sram_read_pj: float
    ofmap_sram_write_pj: float
    ifmap_sram_write_pj: float
    filter_sram_write_pj: float
    dram_pj_per_word: float


# 45 nm per-operation energies in pJ (Horowitz, ISSCC 2014): bits -> (mult, add).
_OP_ENERGY_PJ = {8: (0.2, 0.03), 16: (1.1, 0.4), 32: (3.7, 0.9)}


def _mult_add_pj(bits: int) -> tuple[float, float]:
    if bits in _OP_ENERGY_PJ:
        return _OP_ENERGY_PJ[bits]
    mult8, add8 = _OP_ENERGY_PJ[8]
    return mult8 * (bits / 8) ** 2, add8 * (bits / 8)


def sram_pj_per_byte(table: dict[float, float], size_kib: float) -> float:
    """pJ per byte for an SRAM of ``size_kib``: piecewise linear in log2(size), clamped."""
    points = sorted(table.items())
    if size_kib <= points[0][0]:
        return points[0][1]
    if size_kib >= points[-1][0]:
        return points[-1][1]
    for (s0, e0), (s1, e1) in itertools.pairwise(points):
        if s0 <= size_kib <= s1:
            t = (math.log2(size_kib) - math.log2(s0)) / (math.log2(s1) - math.log2(s0))
            return e0 + t * (e1 - e0)
    raise AssertionError("unreachable")


def _resolve_energy(hw: Hardware) -> ActionEnergy:
    table = hw.energy
    mult, add = _mult_add_pj(hw.word_bits)
    wb = hw.word_bytes
    read = table.sram_read_pj_per_byte
    write = table.sram_write_pj_per_byte
    return ActionEnergy(
        mac_pj=table.mac_pj if table.mac_pj is not None else mult + add,
        complex_mac_pj=table.complex_mac_pj if table.complex_mac_pj is not None
        else 4 * mult + 4 * add,
        fft_butterfly_pj=table.fft_butterfly_pj if table.fft_butterfly_pj is not None
        else 4 * mult + 6 * add,
        index_decode_pj=table.index_decode_pj if table.index_decode_pj is not None else add,
        ifmap_sram_read_pj=sram_pj_per_byte(read, hw.sram_kb.ifmap) * wb,
        filter_sram_read_pj=sram_pj_per_byte(read, hw.sram_kb.filter) * wb,
        ofmap_sram_read_pj=sram_pj_per_byte(read, hw.sram_kb.ofmap) * wb,
        ofmap_sram_write_pj=sram_pj_per_byte(write, hw.sram_kb.ofmap) * wb,
        ifmap_sram_write_pj=sram_pj_per_byte(write, hw.sram_kb.ifmap) * wb,
        filter_sram_write_pj=sram_pj_per_byte(write, hw.sram_kb.filter) * wb,
        dram_pj_per_word=table.dram_pj_per_byte * wb,
    )
