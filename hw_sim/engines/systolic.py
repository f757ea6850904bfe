"""Dense layers on a systolic PE array (weight-, input- or output-stationary).

Timing is SCALE-Sim v3's, exactly.  An ``Sr x Sc`` array runs a GEMM of ``M`` output pixels,
``N`` filters and reduction length ``K`` as *folds*: one fold per (row block, column block)
of the array mapping.

========  ===============  ===============  ==========  ===============================
dataflow  array rows hold  array cols hold  streamed    cycles per fold
========  ===============  ===============  ==========  ===============================
ws        K (weights)      N (weights)      M pixels    Sr preload + (M + Sr + Sc - 2)
is        K (inputs)       M (inputs)       N filters   Sr preload + (N + Sr + Sc - 2)
os        M (outputs)      N (outputs)      K           K + Sr + Sc - 2
========  ===============  ===============  ==========  ===============================

Folds iterate column blocks outer and row blocks inner (ws, is; partial sums of one column
block accumulate over consecutive folds) or row blocks outer (os; an input tile is reused by
consecutive folds).  Partially filled folds take the full-array time, as in SCALE-Sim.

Memory: a fold's streamed operand is cut into chunks that fit half of its buffer; each chunk
is one step of the double-buffered schedule (:mod:`hw_sim.schedule`).  An operand whose
distinct words fit in its whole buffer is *resident*: fetched once, at the start of each group,
and reused.  Otherwise each chunk fetches its slice of the im2col matrix.  ws/is partial sums
stay in the output buffer when a column block's output tile fits in half of it; otherwise
they spill to DRAM after every fold and are read back by the next.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from hw_sim.engines.base import LayerT, blocks, stream_chunks, too_small
from hw_sim.hardware import Hardware
from hw_sim.schedule import OpCounts, StepRun, coalesce


@dataclass(frozen=True, slots=True)
class SystolicWork:
    """One step: a chunk of one fold.

    Attributes:
        rows_used: array rows the fold maps (<= Sr).
        cols_used: array columns the fold maps (<= Sc).
        stream: stream units (pixels, filters or reduction steps) entering in this step.
        stream_total: stream units of the whole fold.
        chunk: nominal chunk size of the fold (middle chunks have this size).
        first: the step starts the fold (includes the stationary-operand preload).
        last: the step ends the fold (includes the pipeline drain).
        psum_read: the fold accumulates onto partial sums of an earlier fold.
    """

    rows_used: int
    cols_used: int
    stream: int
    stream_total: int
    chunk: int
    first: bool
    last: bool
    psum_read: bool = field(default=False)


def pairs_sum_at_most(rows: int, cols: int, s: int) -> int:
    """Number of ``(r, c)`` in ``[0, rows) x [0, cols)`` with ``r + c <= s``."""
    if s < 0:
        return 0
    if s >= rows + cols - 2:
        return rows * cols
    top = min(rows - 1, s)
    full_to = min(top, s + 1 - cols)  # rows r <= full_to contribute all `cols` columns
    total = cols * (full_to + 1) if full_to >= 0 else 0
    lo = max(full_to + 1, 0)
    if lo <= top:
        # sum_{r=lo}^{top} (s + 1 - r)
        n = top - lo + 1
        total += n * (s + 1) - (lo + top) * n // 2
    return total


def _band(rows: int, cols: int, lo: int, hi: int) -> int:
    """Number of ``(r, c)`` with ``lo <= r + c <= hi``."""
    if hi < lo:
        return 0
    return pairs_sum_at_most(rows, cols, hi) - pairs_sum_at_most(rows, cols, lo - 1)


def _span(count: int, lo: int, hi: int) -> int:
    """Number of integers ``i`` in ``[0, count)`` with ``lo <= i <= hi``."""
    return max(0, min(count - 1, hi) - max(0, lo) + 1)


class SystolicEngine:
    """Dense GEMMs on the PE array."""

    name = "systolic"

    # -- mapping ------------------------------------------------------------------------

    def reduction_length(self, layer: LayerT) -> int:
        """Rows of the weight matrix the array multiplies (the format's, ``K`` when dense)."""
        return layer.weight_format.systolic_reduction(layer)

    def plan(self, layer: LayerT, hw: Hardware, weights_on_chip: bool = False) -> list[StepRun]:
        arr = hw.pe_array
        df = arr.dataflow
        m, n, k = layer.gemm_m, layer.gemm_n, self.reduction_length(layer)
        row_dim, col_dim, stream = {"ws": (k, n, m), "is": (k, m, n), "os": (m, n, k)}[df]
        ifmap_group_words = layer.ifmap_words // layer.groups
        filter_group_words = n * k
        ifmap_resident = ifmap_group_words <= hw.sram_words("ifmap")
        filter_resident = filter_group_words <= hw.sram_words("filter")
        if df == "ws":
            filter_resident = False  # every weight tile is used by exactly one fold
        if weights_on_chip:
            filter_resident = True  # loaded before the first inference, never again
        halves = {op: hw.sram_half_words(op) for op in ("ifmap", "filter", "ofmap")}

        group: list[StepRun] = []
        outer_blocks = blocks(col_dim if df != "os" else row_dim, arr.cols if df != "os" else arr.rows)
        inner_blocks = blocks(row_dim if df != "os" else col_dim, arr.rows if df != "os" else arr.cols)
        n_inner = sum(count for _, count in inner_blocks)
        for outer_size, outer_count in outer_blocks:
            sequence: list[StepRun] = []
            inner_index = 0
            for inner_size, inner_count in inner_blocks:
                for _ in range(inner_count):
                    if df == "os":
                        rows_used, cols_used = outer_size, inner_size
                    else:
                        rows_used, cols_used = inner_size, outer_size
                    sequence.extend(self._fold_steps(
                        df, hw, halves, rows_used, cols_used, stream,
                        inner_index, n_inner, ifmap_resident, filter_resident))
                    inner_index += 1
            group.extend(coalesce(sequence * outer_count))
        group = coalesce(group)
        first = group[0]
        group[0] = StepRun(
            first.work,
            first.ifmap_load_words + (ifmap_group_words if ifmap_resident else 0),
            first.filter_load_words + (
                filter_group_words if filter_resident and not weights_on_chip else 0),
            first.psum_load_words, first.store_words, 1)
        if first.repeat > 1:
            group.insert(1, StepRun(first.work, first.ifmap_load_words, first.filter_load_words,
                                    first.psum_load_words, first.store_words, first.repeat - 1))
        return coalesce(group * layer.groups)

    def _fold_steps(self, df: str, hw: Hardware, halves: dict[str, int], rows_used: int,
                    cols_used: int, stream: int, inner_index: int, n_inner: int,
                    ifmap_resident: bool, filter_resident: bool) -> list[StepRun]:
        """The steps of one fold, chunked along its stream."""
        limits: dict[str, int] = {}  # operand -> most stream units per chunk its buffer allows
        stationary_words = rows_used * cols_used
        if df == "os":
            tile_reuse = rows_used * stream <= halves["ifmap"]
            if not ifmap_resident:
                limits["ifmap"] = halves["ifmap"] // rows_used
            if not filter_resident:
                limits["filter"] = halves["filter"] // cols_used
            if stationary_words > halves["ofmap"]:
                raise too_small("ofmap", hw, stationary_words,
                                f"one {rows_used}x{cols_used} output tile")
        else:
            stationary_op, streamed_op = ("filter", "ifmap") if df == "ws" else ("ifmap", "filter")
            streamed_resident = ifmap_resident if df == "ws" else filter_resident
            stationary_resident = (ifmap_resident if df == "is" else filter_resident)
            if not stationary_resident and stationary_words > halves[stationary_op]:
                raise too_small(stationary_op, hw, stationary_words,
                                f"one {rows_used}x{cols_used} stationary tile")
            if not streamed_resident:
                limits[streamed_op] = halves[streamed_op] // rows_used
            psums_stay = stream * cols_used <= halves["ofmap"]
            if not psums_stay:
                limits["ofmap"] = halves["ofmap"] // cols_used
        for operand, most in limits.items():
            if most < 1:
                unit = cols_used if operand == "ofmap" or (df == "os" and operand == "filter") \
                    else rows_used
                raise too_small(operand, hw, unit, "one stream unit of a tile")
        chunk = min([stream, *limits.values()])

        steps: list[StepRun] = []
        for size, count, is_first, is_last in stream_chunks(stream, chunk):
            work = SystolicWork(rows_used, cols_used, size, stream, chunk, is_first, is_last,
                                psum_read=df != "os" and inner_index > 0)
            if df == "os":
                ifmap_load = 0 if ifmap_resident or (tile_reuse and inner_index > 0) \
                    else rows_used * size
                filter_load = 0 if filter_resident else cols_used * size
                steps.append(StepRun(work, ifmap_load, filter_load, 0,
                                     stationary_words if is_last else 0, count))
                continue
            final = inner_index == n_inner - 1
            streamed_words = 0 if streamed_resident else rows_used * size
            stationary_load = stationary_words if is_first and not stationary_resident else 0
            psum_load = cols_used * size if (not psums_stay and inner_index > 0) else 0
            store = cols_used * size if (final or not psums_stay) else 0
            if df == "ws":
                steps.append(StepRun(work, streamed_words, stationary_load, psum_load, store, count))
            else:
                steps.append(StepRun(work, stationary_load, streamed_words, psum_load, store, count))
        return steps

    # -- closed-form timing ------------------------------------------------------------

    def step_cost(self, work: SystolicWork, hw: Hardware) -> tuple[int, OpCounts]:
        arr = hw.pe_array
        df = arr.dataflow
        preload = arr.rows if df != "os" else 0
        cycles = work.stream
        if work.first:
            cycles += preload
        if work.last:
            cycles += arr.rows + arr.cols - 2
        r, c, t = work.rows_used, work.cols_used, work.stream
        macs = r * c * t
        psum_reads = c * t if work.psum_read else 0
        if df == "ws":
            counts = OpCounts(macs=macs, ifmap_sram_reads=r * t,
                              filter_sram_reads=r * c if work.first else 0,
                              ofmap_sram_reads=psum_reads, ofmap_sram_writes=c * t)
        elif df == "is":
            counts = OpCounts(macs=macs, ifmap_sram_reads=r * c if work.first else 0,
                              filter_sram_reads=r * t,
                              ofmap_sram_reads=psum_reads, ofmap_sram_writes=c * t)
        else:
            counts = OpCounts(macs=macs, ifmap_sram_reads=r * t, filter_sram_reads=c * t,
                              ofmap_sram_writes=r * c if work.last else 0)
        return cycles, counts

    # -- cycle by cycle ----------------------------------------------------------------

    def cycle_activity(self, work: SystolicWork, hw: Hardware,
                       repetition: int) -> Iterator[tuple[int, ...]]:
        """Walk the fold's wavefront: PE (r, c) works on stream unit ``u - r - c`` at stream
        cycle ``u``; outputs leave the bottom of column ``c`` (ws/is) ``Sr - 1`` cycles after
        the unit entered it; in os, PE (r, c) writes its output after its last MAC."""
        arr = hw.pe_array
        df = arr.dataflow
        sr = arr.rows
        preload = sr if df != "os" else 0
        cycles, _ = self.step_cost(work, hw)
        if work.first:
            start = 0
        elif work.last:
            start = preload + work.stream_total - work.stream
        else:
            start = preload + work.chunk * (1 + repetition)
        rows, cols, total = work.rows_used, work.cols_used, work.stream_total
        for t in range(start, start + cycles):
            if t < preload:
                loaded = cols if t < rows else 0
                if df == "ws":
                    yield (0, 0, 0, 0, 0, loaded, 0, 0)
                else:
                    yield (0, 0, 0, 0, loaded, 0, 0, 0)
                continue
            u = t - preload
            macs = _band(rows, cols, u - total + 1, u)
            if df == "os":
                yield (macs, 0, 0, 0, _span(rows, u - total + 1, u), _span(cols, u - total + 1, u),
                       0, _band(rows, cols, u - total + 1, u - total + 1))
                continue
            edge_reads = _span(rows, u - total + 1, u)
            writes = _span(cols, u - (sr - 1) - total + 1, u - (sr - 1))
            psums = _span(cols, u - total + 1, u) if work.psum_read else 0
            if df == "ws":
                yield (macs, 0, 0, 0, edge_reads, 0, psums, writes)
            else:
                yield (macs, 0, 0, 0, 0, edge_reads, psums, writes)

    def peak_ops_per_cycle(self, hw: Hardware) -> int:
        return hw.pe_array.rows * hw.pe_array.cols

    def useful_ops(self, counts: OpCounts) -> int:
        return counts.macs


SYSTOLIC = SystolicEngine()
