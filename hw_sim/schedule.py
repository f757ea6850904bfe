"""The interface between compute timing and memory: a layer's schedule of steps.

An engine maps a layer onto the hardware as a sequence of *steps*: one period of the
double-buffered on-chip memory.  A step needs some words on chip before it starts (fetched
from DRAM during the previous step into the shadow half of each buffer) and leaves some
words to be written back (drained during the next step).  The compute side says how long
each step computes; the memory model below turns loads and stores into stall cycles.

Memory model (double-buffered prefetch, one DRAM channel of ``B`` words/cycle)::

    prologue      = ceil(load[0] / B)
    duration[i]   = max(compute[i], ceil((load[i+1] + store[i-1]) / B))
    epilogue      = ceil(store[last] / B)
    occupancy     = prologue + sum(duration) + epilogue

Step ``i+1``'s inputs stream into the shadow halves while step ``i`` computes, and step
``i-1``'s outputs drain from the shadow half of the output buffer, which step ``i+1`` will
write into; step ``i+1`` starts when both the compute of step ``i`` and those transfers are
done.  With unlimited bandwidth every transfer takes zero cycles.

Cycle counts follow SCALE-Sim's convention: a layer's ``compute_cycles`` and
``total_cycles`` are the index of its last busy cycle counting from 0 (occupancy minus one),
which is what SCALE-Sim v3 reports in COMPUTE_REPORT.csv.

Steps are stored run-length encoded (:class:`StepRun`), so a layer with thousands of
identical folds costs a handful of objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

COUNT_FIELDS = (
    "macs",
    "complex_macs",
    "fft_butterflies",
    "index_decodes",
    "ifmap_sram_reads",
    "filter_sram_reads",
    "ofmap_sram_reads",
    "ofmap_sram_writes",
)


@dataclass(frozen=True, slots=True)
class OpCounts:
    """Actions counted on the compute side (all in units of one action or one word)."""

    macs: int = 0
    complex_macs: int = 0
    fft_butterflies: int = 0
    index_decodes: int = 0
    ifmap_sram_reads: int = 0
    filter_sram_reads: int = 0
    ofmap_sram_reads: int = 0
    ofmap_sram_writes: int = 0

    def __add__(self, other: OpCounts) -> OpCounts:
        return OpCounts(*(getattr(self, f) + getattr(other, f) for f in COUNT_FIELDS))

    def scaled(self, times: int) -> OpCounts:
        return OpCounts(*(getattr(self, f) * times for f in COUNT_FIELDS))

    def as_tuple(self) -> tuple[int, ...]:
        return tuple(getattr(self, f) for f in COUNT_FIELDS)

    @classmethod
    def from_tuple(cls, values: Iterable[int]) -> OpCounts:
        return cls(*(int(v) for v in values))


ZERO_COUNTS = OpCounts()


@dataclass(frozen=True, slots=True)
class StepRun:
    """``repeat`` consecutive identical steps.

    Attributes:
        work: engine-specific description of the step's computation; both compute models of
            the engine (closed form and per cycle) read it.
        ifmap_load_words: input words fetched from DRAM before the step starts.
        filter_load_words: weight words fetched before the step starts.
        psum_load_words: partial sums read back from DRAM before the step starts.
        store_words: output (or spilled partial-sum) words the step leaves for DRAM.
        repeat: number of consecutive identical steps.
    """

    work: Any
    ifmap_load_words: int = 0
    filter_load_words: int = 0
    psum_load_words: int = 0
    store_words: int = 0
    repeat: int = 1

    @property
    def load_words(self) -> int:
        return self.ifmap_load_words + self.filter_load_words + self.psum_load_words


def coalesce(runs: Iterable[StepRun]) -> list[StepRun]:
    """Merge adjacent runs of identical steps."""
    out: list[StepRun] = []
    for run in runs:
        if run.repeat <= 0:
            continue
        if out and _same_step(out[-1], run):
            prev = out[-1]
            out[-1] = StepRun(prev.work, prev.ifmap_load_words, prev.filter_load_words,
                              prev.psum_load_words, prev.store_words, prev.repeat + run.repeat)
        else:
            out.append(run)
    return out


def _same_step(a: StepRun, b: StepRun) -> bool:
    return (a.work == b.work and a.ifmap_load_words == b.ifmap_load_words
            and a.filter_load_words == b.filter_load_words
            and a.psum_load_words == b.psum_load_words and a.store_words == b.store_words)


@dataclass(frozen=True, slots=True)
class DramTraffic:
    """Words moved between DRAM and the chip for one layer."""

    ifmap_reads: int = 0
    filter_reads: int = 0
    psum_reads: int = 0
    ofmap_writes: int = 0

    @property
    def total_words(self) -> int:
        return self.ifmap_reads + self.filter_reads + self.psum_reads + self.ofmap_writes


def dram_traffic(runs: Sequence[StepRun]) -> DramTraffic:
    """Total DRAM words of a schedule, by operand."""
    return DramTraffic(
        ifmap_reads=sum(r.ifmap_load_words * r.repeat for r in runs),
        filter_reads=sum(r.filter_load_words * r.repeat for r in runs),
        psum_reads=sum(r.psum_load_words * r.repeat for r in runs),
        ofmap_writes=sum(r.store_words * r.repeat for r in runs),
    )


def transfer_cycles(words: int, bandwidth: int | None) -> int:
    """Cycles for the DRAM channel to move ``words`` (zero with unlimited bandwidth)."""
    if bandwidth is None or words == 0:
        return 0
    return -(-words // bandwidth)


@dataclass(frozen=True, slots=True)
class Timeline:
    """Occupancy of one layer under the memory model, in cycles."""

    occupancy_cycles: int
    compute_occupancy_cycles: int

    @property
    def total_cycles(self) -> int:
        """SCALE-Sim convention: index of the last busy cycle."""
        return self.occupancy_cycles - 1

    @property
    def compute_cycles(self) -> int:
        return self.compute_occupancy_cycles - 1

    @property
    def stall_cycles(self) -> int:
        return self.occupancy_cycles - self.compute_occupancy_cycles


def memory_timeline(
    runs: Sequence[StepRun], compute_cycles: Sequence[int], bandwidth: int | None
) -> Timeline:
    """Apply the double-buffered memory model to a schedule (closed form per run).

    Args:
        runs: the layer's schedule.
        compute_cycles: compute cycles of one step of each run, ``len(runs)`` values.
        bandwidth: DRAM words per cycle, ``None`` for unlimited.
    """
    if not runs:
        return Timeline(1, 1)
    total = transfer_cycles(runs[0].load_words, bandwidth)
    compute_total = 0
    prev_store = 0
    for j, (run, cycles) in enumerate(zip(runs, compute_cycles, strict=True)):
        next_load = runs[j + 1].load_words if j + 1 < len(runs) else 0
        compute_total += cycles * run.repeat
        if run.repeat == 1:
            total += max(cycles, transfer_cycles(next_load + prev_store, bandwidth))
        else:
            total += max(cycles, transfer_cycles(run.load_words + prev_store, bandwidth))
            total += (run.repeat - 2) * max(
                cycles, transfer_cycles(run.load_words + run.store_words, bandwidth))
            total += max(cycles, transfer_cycles(next_load + run.store_words, bandwidth))
        prev_store = run.store_words
    total += transfer_cycles(prev_store, bandwidth)
    return Timeline(total, compute_total)
