"""Simulation results: per-layer and whole-network reports, as a table or JSON.

The analytical model (:mod:`accelerator_model`) fills the same types, so ``a3cs simulate``
and ``a3cs estimate`` print the same table and the same JSON fields.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from hw_sim.hardware import ActionEnergy
from hw_sim.schedule import DramTraffic, OpCounts


@dataclass(frozen=True, slots=True)
class EnergyBreakdown:
    """Energy of one layer by component, in pJ."""

    compute_pj: float
    sram_pj: float
    dram_pj: float

    @property
    def total_pj(self) -> float:
        return self.compute_pj + self.sram_pj + self.dram_pj


def energy_of(counts: OpCounts, traffic: DramTraffic, table: ActionEnergy) -> EnergyBreakdown:
    """Energy of counted actions.  DRAM reads also write the SRAM they fill; DRAM writes read
    the output buffer they drain."""
    compute = (counts.macs * table.mac_pj + counts.complex_macs * table.complex_mac_pj
               + counts.fft_butterflies * table.fft_butterfly_pj
               + counts.index_decodes * table.index_decode_pj)
    sram = (counts.ifmap_sram_reads * table.ifmap_sram_read_pj
            + counts.filter_sram_reads * table.filter_sram_read_pj
            + counts.ofmap_sram_reads * table.ofmap_sram_read_pj
            + counts.ofmap_sram_writes * table.ofmap_sram_write_pj
            + traffic.ifmap_reads * table.ifmap_sram_write_pj
            + traffic.filter_reads * table.filter_sram_write_pj
            + traffic.psum_reads * table.ofmap_sram_write_pj
            + traffic.ofmap_writes * table.ofmap_sram_read_pj)
    dram = traffic.total_words * table.dram_pj_per_word
    return EnergyBreakdown(compute, sram, dram)


@dataclass(frozen=True, slots=True)
class LayerReport:
    """One layer on one hardware configuration.

    Cycle counts follow SCALE-Sim's convention (index of the last busy cycle).
    ``utilization`` is useful operations / (engine peak operations per cycle x occupied
    cycles).
    """

    name: str
    engine: str
    weight_format: str
    total_cycles: int
    compute_cycles: int
    stall_cycles: int
    utilization: float
    macs: int
    complex_macs: int
    fft_butterflies: int
    index_decodes: int
    ifmap_sram_reads: int
    filter_sram_reads: int
    ofmap_sram_reads: int
    ofmap_sram_writes: int
    ifmap_dram_reads: int
    filter_dram_reads: int
    psum_dram_reads: int
    ofmap_dram_writes: int
    compute_energy_pj: float
    sram_energy_pj: float
    dram_energy_pj: float
    latency_s: float

    @property
    def energy_pj(self) -> float:
        return self.compute_energy_pj + self.sram_energy_pj + self.dram_energy_pj

    @property
    def sram_accesses(self) -> int:
        return (self.ifmap_sram_reads + self.filter_sram_reads + self.ofmap_sram_reads
                + self.ofmap_sram_writes + self.dram_accesses)

    @property
    def dram_accesses(self) -> int:
        return (self.ifmap_dram_reads + self.filter_dram_reads + self.psum_dram_reads
                + self.ofmap_dram_writes)


_SUMMED = ("total_cycles", "compute_cycles", "stall_cycles", "macs", "complex_macs",
           "fft_butterflies", "index_decodes", "ifmap_sram_reads", "filter_sram_reads",
           "ofmap_sram_reads", "ofmap_sram_writes", "ifmap_dram_reads", "filter_dram_reads",
           "psum_dram_reads", "ofmap_dram_writes", "compute_energy_pj", "sram_energy_pj",
           "dram_energy_pj", "latency_s")


@dataclass(frozen=True, slots=True)
class SimReport:
    """A workload on a hardware configuration: per-layer reports and network totals.

    Layers run one after another; ``latency_s`` is the sum of layer cycles over the clock
    and ``fps`` is ``batch / latency_s``.
    """

    workload: str
    hardware: str
    # "hw_sim/event", "hw_sim/stepper", "accelerator_model", or "hw_sim/event, SCALE-Sim memory
    # model" (memory_model: scalesim; then a layer's total is SCALE-Sim's "Total Cycles (incl.
    # prefetch)" and compute + stall its "Total Cycles")
    source: str
    clock_mhz: float
    batch: int
    layers: tuple[LayerReport, ...]
    weights_on_chip: bool = False
    # Static power per component (hw_sim.power.StaticPower.as_dict(), mW); static energy is
    # it times the latency, reported beside the dynamic energy.
    static_power_mw: dict[str, float] | None = None

    def total(self, name: str) -> float:
        return sum(getattr(layer, name) for layer in self.layers)

    @property
    def total_cycles(self) -> int:
        return int(self.total("total_cycles"))

    @property
    def compute_cycles(self) -> int:
        return int(self.total("compute_cycles"))

    @property
    def stall_cycles(self) -> int:
        return int(self.total("stall_cycles"))

    @property
    def latency_s(self) -> float:
        return self.total_cycles / (self.clock_mhz * 1e6)

    @property
    def fps(self) -> float:
        return self.batch / self.latency_s if self.latency_s > 0 else float("inf")

    @property
    def energy_pj(self) -> float:
        return sum(layer.energy_pj for layer in self.layers)

    @property
    def utilization(self) -> float:
        """Cycle-weighted mean of the layers' utilization."""
        occupied = sum(layer.total_cycles + 1 for layer in self.layers)
        return sum(layer.utilization * (layer.total_cycles + 1) for layer in self.layers) / occupied

    def summary(self) -> dict[str, Any]:
        """Network totals as a flat mapping."""
        out: dict[str, Any] = {key: self.total(key) for key in _SUMMED}
        for key in _SUMMED:
            if not key.endswith(("_pj", "_s")):
                out[key] = int(out[key])
        out.update(
            latency_s=self.latency_s, fps=self.fps, utilization=self.utilization,
            energy_pj=self.energy_pj,
            energy_per_inference_uj=self.energy_pj * 1e-6,
            sram_accesses=sum(layer.sram_accesses for layer in self.layers),
            dram_accesses=sum(layer.dram_accesses for layer in self.layers),
        )
        static_mw = self.static_power_mw["total_mw"] if self.static_power_mw else 0.0
        # mW x s = mJ = 1e9 pJ
        out.update(static_power_mw=static_mw, static_energy_pj=static_mw * self.latency_s * 1e9)
        out.update(total_energy_per_inference_uj=(self.energy_pj + out["static_energy_pj"]) * 1e-6,
                   average_power_mw=(self.energy_pj * 1e-9 / self.latency_s + static_mw)
                   if self.latency_s > 0 else static_mw)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload, "hardware": self.hardware, "source": self.source,
            "clock_mhz": self.clock_mhz, "batch": self.batch,
            "weights_on_chip": self.weights_on_chip, "static_power_mw": self.static_power_mw,
            "layers": [{**asdict(layer), "energy_pj": layer.energy_pj} for layer in self.layers],
            "summary": self.summary(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_table(self) -> str:
        """Per-layer table and summary for a terminal."""
        head = ("layer", "engine", "format", "total_cyc", "compute", "stall", "util%",
                "sram_acc", "dram_acc", "energy_uJ")
        rows = [head]
        for layer in self.layers:
            rows.append((
                layer.name, layer.engine, layer.weight_format, f"{layer.total_cycles:,}",
                f"{layer.compute_cycles:,}", f"{layer.stall_cycles:,}",
                f"{100 * layer.utilization:.1f}", f"{layer.sram_accesses:,}",
                f"{layer.dram_accesses:,}", f"{layer.energy_pj * 1e-6:.3f}",
            ))
        widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
        lines = ["  ".join(cell.ljust(w) if i < 3 else cell.rjust(w)
                           for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
                 for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        s = self.summary()
        lines += [
            "",
            f"{self.workload} on {self.hardware} ({self.source}, {self.clock_mhz:g} MHz, "
            f"batch {self.batch}{', weights kept on chip' if self.weights_on_chip else ''})",
            f"  total cycles      {s['total_cycles']:,}  (compute {s['compute_cycles']:,}, "
            f"stall {s['stall_cycles']:,})",
            *([f"  SCALE-Sim         Total Cycles {s['compute_cycles'] + s['stall_cycles']:,} "
               "(compute + stall); the total above adds the prefetch before cycle 0 and the "
               "final drain (its 'incl. prefetch' figure)"]
              if "SCALE-Sim memory model" in self.source else []),
            f"  utilization       {100 * s['utilization']:.2f} %",
            f"  SRAM accesses     {s['sram_accesses']:,} words   DRAM accesses "
            f"{s['dram_accesses']:,} words",
            f"  energy            {s['energy_pj'] * 1e-6:.4f} uJ per inference  (compute "
            f"{s['compute_energy_pj'] * 1e-6:.4f}, SRAM {s['sram_energy_pj'] * 1e-6:.4f}, "
            f"DRAM {s['dram_energy_pj'] * 1e-6:.4f})",
            f"  latency           {s['latency_s'] * 1e3:.4f} ms   FPS {s['fps']:,.1f}",
        ]
        if self.static_power_mw is not None:
            parts = ", ".join(f"{name.removesuffix('_mw').replace('_', ' ')} {value:.4g}"
                              for name, value in self.static_power_mw.items()
                              if name != "total_mw")
            lines += [
                f"  static power      {s['static_power_mw']:.4g} mW  ({parts})",
                f"  with static       {s['total_energy_per_inference_uj']:.4f} uJ per inference"
                f"  (static {s['static_energy_pj'] * 1e-6:.4f});  average power "
                f"{s['average_power_mw']:.4g} mW",
            ]
        return "\n".join(lines)


def layer_report_fields() -> tuple[str, ...]:
    """Names of the per-layer fields, in table/JSON order."""
    return tuple(f.name for f in fields(LayerReport))
