"""1xN block-sparse layers on a vector engine (BSR-like stream).

The weight of each group is a grid of blocks: ``n`` consecutive output channels (a *block
row*) x 1 input channel x all kernel taps; the block mask says which are kept.  The engine
has ``vector_lanes`` units; block rows are dealt to them ``vector_lanes`` at a time (a *row
group*), and the units of a row group run in lock-step.  For a chunk of ``m`` output pixels
(at most ``accumulator_depth``), a unit walks its row's nonzero blocks::

    for each nonzero block (r, c):          # index decode: index_decode_cycles
        for each tap:                        # read the n weights once (held in a register)
            for each pixel in the chunk:     # read one activation, ceil(n / V) cycles of
                acc[pixel] += x * w          # V-wide FMA
    write the n x m accumulators back        # 1 cycle (double-buffered accumulators)

so row ``r`` takes ``nnz_r * (decode + taps * m * ceil(n / V))`` cycles and a row group takes
the longest of its rows plus one: rows with more blocks set the pace (load imbalance).

Memory: a row group's weights (``n * taps`` values and one index word per kept block) are
fetched into half the filter buffer, unless all the layer's weights fit the buffer (resident,
fetched once).  When a row group's weights exceed half the buffer, each row's blocks are cut
into ``S`` equal segments that do fit, processed one after another (the units re-synchronise
after each segment) and fetched again for every pixel chunk.  Activations are resident when
the distinct input fits the ifmap buffer; otherwise each step fetches the im2col columns its
row group touches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from hw_sim.engines.base import LayerT, stream_chunks, too_small
from hw_sim.hardware import Hardware
from hw_sim.schedule import OpCounts, StepRun, coalesce
from hw_sim.workload import OneByN


@dataclass(frozen=True, slots=True)
class OneByNWork:
    """One step: a row group on a chunk of pixels.

    Attributes:
        row_blocks: kept blocks of each block row processed in this step (one entry per unit).
        pixels: output pixels in the chunk.
        taps: kernel taps per block.
        n: output channels per block.
        writeback: the step ends the pixel chunk and writes the accumulators back.
    """

    row_blocks: tuple[int, ...]
    pixels: int
    taps: int
    n: int
    writeback: bool = True


def _segment(row_blocks: list[int], segments: int, index: int) -> tuple[int, ...]:
    """Blocks of each row in segment ``index`` when rows are cut into ``segments`` near-equal
    parts (the first ``blocks % segments`` parts get one extra block)."""
    return tuple(b // segments + (1 if index < b % segments else 0) for b in row_blocks)


def _segment_words(row_blocks: list[int], segments: int, block_words: int) -> int:
    return sum(_segment(row_blocks, segments, 0)) * block_words


def row_cycles(blocks: int, work: OneByNWork, lane_width: int, decode: int) -> int:
    """Cycles a unit spends on a row with ``blocks`` kept blocks."""
    return blocks * (decode + work.taps * work.pixels * -(-work.n // lane_width))


class OneByNEngineModel:
    """1xN block-sparse layers on the vector engine."""

    name = "one_by_n"

    def plan(self, layer: LayerT, hw: Hardware, weights_on_chip: bool = False) -> list[StepRun]:
        fmt = layer.weight_format
        assert isinstance(fmt, OneByN)
        engine = hw.one_by_n
        assert engine is not None
        mask = layer.block_mask()
        taps = layer.taps
        rows_per_group = layer.gemm_n // fmt.n
        block_words = fmt.n * taps + 1  # n * taps values + one index
        half = {op: hw.sram_half_words(op) for op in ("ifmap", "filter", "ofmap")}
        ifmap_group_words = layer.ifmap_words // layer.groups
        ifmap_resident = ifmap_group_words <= hw.sram_words("ifmap")
        layer_weight_words = int(mask.sum()) * block_words
        weights_resident = weights_on_chip or layer_weight_words <= hw.sram_words("filter")
        if block_words > half["filter"] and not weights_resident:
            raise too_small("filter", hw, block_words, "one block's weights and index")

        runs: list[StepRun] = []
        for g in range(layer.groups):
            group_mask = mask[g * rows_per_group:(g + 1) * rows_per_group]
            group_runs: list[StepRun] = []
            for start in range(0, rows_per_group, engine.vector_lanes):
                rows = group_mask[start:start + engine.vector_lanes]
                row_blocks = [int(x) for x in rows.sum(axis=1)]
                segments = 1
                if not weights_resident:
                    # Cut every row into the same number of segments; the largest segment of
                    # the group must fit half the filter buffer.
                    while _segment_words(row_blocks, segments, block_words) > half["filter"]:
                        segments += 1
                        if segments > max(row_blocks):
                            raise too_small("filter", hw, len(row_blocks) * block_words,
                                            "one kept block for every unit of a row group")
                columns = int(np.count_nonzero(rows.any(axis=0)))
                limits = {"accumulators": engine.accumulator_depth,
                          "ofmap": half["ofmap"] // (len(row_blocks) * fmt.n)}
                if not ifmap_resident and columns:
                    limits["ifmap"] = half["ifmap"] // (taps * columns)
                for operand, most in limits.items():
                    if most < 1:
                        need = taps * columns if operand == "ifmap" else len(row_blocks) * fmt.n
                        raise too_small(operand, hw, need, "the data of one output pixel")
                chunk = min(layer.gemm_m, *limits.values())
                parts = [_segment(row_blocks, segments, s) for s in range(segments)]
                for size, count, is_first, _ in stream_chunks(layer.gemm_m, chunk):
                    chunk_runs = []
                    for s, part in enumerate(parts):
                        fetch = not weights_resident and (is_first or segments > 1)
                        chunk_runs.append(StepRun(
                            OneByNWork(part, size, taps, fmt.n, writeback=s == segments - 1),
                            0 if ifmap_resident else size * taps * columns,
                            sum(part) * block_words if fetch else 0,
                            0,
                            size * len(row_blocks) * fmt.n if s == segments - 1 else 0,
                        ))
                    group_runs.extend(coalesce(chunk_runs * count))
            group_runs = coalesce(group_runs)
            head = group_runs[0]
            preload_weights = layer_weight_words if (weights_resident and not weights_on_chip
                                                     and g == 0) else 0
            group_runs[0] = StepRun(
                head.work,
                head.ifmap_load_words + (ifmap_group_words if ifmap_resident else 0),
                head.filter_load_words + preload_weights,
                0, head.store_words, 1)
            if head.repeat > 1:
                group_runs.insert(1, StepRun(head.work, head.ifmap_load_words,
                                             head.filter_load_words, 0, head.store_words,
                                             head.repeat - 1))
            runs.extend(group_runs)
        return coalesce(runs)

    def step_cost(self, work: OneByNWork, hw: Hardware) -> tuple[int, OpCounts]:
        engine = hw.one_by_n
        assert engine is not None
        slowest = max(row_cycles(blocks, work, engine.lane_width, engine.index_decode_cycles)
                      for blocks in work.row_blocks)
        blocks = sum(work.row_blocks)
        return slowest + (1 if work.writeback else 0), OpCounts(
            macs=blocks * work.taps * work.pixels * work.n,
            index_decodes=blocks,
            ifmap_sram_reads=blocks * work.taps * work.pixels,
            filter_sram_reads=blocks * (work.taps * work.n + 1),
            ofmap_sram_writes=len(work.row_blocks) * work.n * work.pixels if work.writeback else 0,
        )

    def cycle_activity(self, work: OneByNWork, hw: Hardware,
                       repetition: int) -> Iterator[tuple[int, ...]]:
        """Each unit runs its row's program one cycle at a time; the group ends one cycle after
        its slowest unit, when the accumulators are written back."""
        engine = hw.one_by_n
        assert engine is not None
        width, decode = engine.lane_width, engine.index_decode_cycles
        sub_cycles = -(-work.n // width)  # cycles per (tap, pixel) on a V-wide FMA
        per_block = decode + work.taps * work.pixels * sub_cycles
        length = max(blocks * per_block for blocks in work.row_blocks)
        for t in range(length):
            macs = decodes = ifmap_reads = filter_reads = 0
            for blocks in work.row_blocks:
                if t >= blocks * per_block:
                    continue
                offset = t % per_block
                if offset == 0:
                    decodes += 1
                    filter_reads += 1  # the block's index word
                if offset < decode:
                    continue
                inner = offset - decode  # position in the (tap, pixel, sub-cycle) walk
                pixel_step, sub = divmod(inner, sub_cycles)
                if sub == 0:
                    ifmap_reads += 1
                    if pixel_step % work.pixels == 0:
                        filter_reads += work.n  # the tap's n weights
                macs += min(width, work.n - sub * width)
            yield (macs, 0, 0, decodes, ifmap_reads, filter_reads, 0, 0)
        if work.writeback:
            yield (0, 0, 0, 0, 0, 0, 0, len(work.row_blocks) * work.n * work.pixels)

    def peak_ops_per_cycle(self, hw: Hardware) -> int:
        assert hw.one_by_n is not None
        return hw.one_by_n.vector_lanes * hw.one_by_n.lane_width

    def useful_ops(self, counts: OpCounts) -> int:
        return counts.macs


ONE_BY_N = OneByNEngineModel()
