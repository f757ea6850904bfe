"""SCALE-Sim 3.0.0's memory model, reproduced: ``memory_model: scalesim``.

hw_sim's own memory model (:mod:`hw_sim.schedule`) prefetches what the next step needs over
one shared DRAM channel.  SCALE-Sim v3 in USER-bandwidth mode does something else
(``scalesim/memory/read_buffer.py``, ``write_buffer.py``, ``double_buffered_scratchpad_mem.py``),
and users comparing with published SCALE-Sim numbers need *its* totals.  This module computes
them from the same inputs SCALE-Sim builds, without its per-address Python loops:

* **Demand.**  The array requests one *line* of SRAM addresses per cycle per operand (its
  demand matrices: folds with inter-fold gaps, skewed for the systolic wavefront).  Lines are
  numbered ``0 .. L-1``; with no stall line ``i`` is issued at cycle ``i`` (``L - 1`` is the
  compute-cycle count hw_sim already equals).
* **Read buffers (ifmap, filter).**  Each operand's *fetch stream* (its prefetch matrix,
  padding included, in SCALE-Sim's order) is cut into sets of ``E = ceil(words / 100)`` valid
  addresses.  The active window holds ``A = ceil(half / E)`` consecutive sets (cyclically);
  a demanded address outside it makes the window jump ``P`` sets forward, again until the
  address is inside.  Which requests miss and how many jumps each needs depends only on the
  address sequences, not on time, so it is found here with whole-array tests (a galloping
  scan for the next miss over tables indexed by address: each address's set, or the count of
  its copies inside the window, kept up to date as the window moves).  Jump ``j`` of an operand completes at the fixed cycle
  ``Lp_j = -1 + j (ceil(half / B) + 1)``: SCALE-Sim issues each refill right after the previous
  one, whatever the array is doing.
* **Stall accounting**, as ``read_buffer.service_reads`` does it: a line starts with
  ``t = c + 1`` (``c`` its issue cycle) and each jump sets ``t = 2 Lp - t`` when
  ``Lp > t`` (the stall is added twice) and ``t = Lp`` otherwise (a refill that was early
  moves the line *earlier*); the line's read stall is ``t - c - 1``.
* **Write buffer (ofmap).**  Words fill rows of ``B`` words; once more than half the buffer is
  occupied and no drain is running, a drain of ``ceil(half / B)`` rows starts at the current
  cycle and takes one cycle a row; a word arriving while the buffer is full waits for the
  running drain to end.  The line's write stall is how long its words waited.
* The global stall grows by ``max(ifmap, filter, ofmap)`` stall per line; line ``i`` is
  issued at ``i +`` the stalls before it.  SCALE-Sim's ``Total Cycles`` is the last line's
  service cycle, ``Stall Cycles`` the global stall, and ``Total Cycles (incl. prefetch)`` the
  span from the first DRAM read (the first prefetch, before cycle 0) to the last DRAM write
  (the drains that empty the buffer after the last line).

The simulation is event driven: only lines where a read misses, a drain starts or a write
waits are visited one by one; the lines between are accounted for in bulk.

Units: cycles; words (one SCALE-Sim byte is one word); bandwidth in words per cycle.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from a3cs_common.errors import ConfigError
from hw_sim.engines import engine_for
from hw_sim.hardware import Hardware
from hw_sim.schedule import memory_timeline, transfer_cycles
from hw_sim.workload import Conv2d, Linear

# SCALE-Sim 3.0.0 constants (single_layer_sim.run, read_buffer, read_port, write_port).
_ACTIVE_FRACTION = 0.5      # active_buf_frac of every buffer
_SETS_PER_BUFFER = 100      # read_buffer.prepare_hashed_buffer: ceil(size / 100) words a set
_READ_LATENCY = 1           # read_port.latency (no Ramulator trace)


@dataclass(frozen=True, slots=True)
class ScaleSimGeometry:
    """A layer as SCALE-Sim's topology describes it (one group, no batch).

    ``ifmap_h``/``ifmap_w`` include padding; ``ofmap_h``/``ofmap_w`` are the output size.
    """

    ifmap_h: int
    ifmap_w: int
    filter_h: int
    filter_w: int
    channels: int
    filters: int
    stride_h: int
    stride_w: int
    ofmap_h: int
    ofmap_w: int

    @property
    def m(self) -> int:
        """Output pixels: rows of the im2col input."""
        return self.ofmap_h * self.ofmap_w

    @property
    def k(self) -> int:
        """Window size: the reduction length."""
        return self.filter_h * self.filter_w * self.channels


def geometry_of(layer: Conv2d | Linear) -> ScaleSimGeometry:
    """The SCALE-Sim view of ``layer`` (a linear layer is ``batch`` 1x1 pixels of
    ``in_features`` channels, which is also what SCALE-Sim's GEMM form builds).

    Raises:
        ConfigError: the layer is one SCALE-Sim's memory model cannot run: a weight format
            other than dense, groups, or a batched convolution.
    """
    if layer.weight_format.type != "dense":
        raise ConfigError(f"layers['{layer.name}'].weight_format", layer.weight_format.type,
                          "dense with memory_model 'scalesim' (SCALE-Sim's USER-bandwidth "
                          "memory system is reproduced for dense layers only)")
    if layer.groups != 1:
        raise ConfigError(f"layers['{layer.name}'].groups", layer.groups,
                          "1 with memory_model 'scalesim'")
    if isinstance(layer, Linear):
        return ScaleSimGeometry(layer.batch, 1, 1, 1, layer.in_features, layer.out_features,
                                1, 1, layer.batch, 1)
    if layer.batch != 1:
        raise ConfigError(f"layers['{layer.name}'].batch", layer.batch,
                          "1 for a convolution with memory_model 'scalesim' (SCALE-Sim's "
                          "topology has no batch)")
    return ScaleSimGeometry(
        layer.in_height + 2 * layer.padding[0], layer.in_width + 2 * layer.padding[1],
        layer.kernel_size[0], layer.kernel_size[1], layer.in_channels, layer.out_channels,
        layer.stride[0], layer.stride[1], layer.out_height, layer.out_width)


def check_scalesim_hardware(hw: Hardware) -> None:
    """Refuse hardware SCALE-Sim's memory system cannot be configured as.

    Raises:
        ConfigError: a buffer that is not a whole number of 1024-word blocks (SCALE-Sim reads
            integer kB of one-word bytes) or smaller than 2 words a half.
    """
    for operand in ("ifmap", "filter", "ofmap"):
        words = hw.sram_words(operand)
        if words % 1024:
            raise ConfigError(f"sram_kb.{operand}", getattr(hw.sram_kb, operand),
                              f"whole 1024-word blocks with memory_model 'scalesim' (SCALE-Sim "
                              f"reads integer kB; this buffer holds {words} words)")


# ------------------------------------------------------------------------------------------
# Operand matrices (scalesim/compute/operand_matrix.py), addresses without the offsets: each
# operand has its own buffer, so only equality within an operand matters.


def ifmap_matrix(g: ScaleSimGeometry) -> np.ndarray:
    """``[M, K]`` im2col addresses (``-1`` where a ceil-mode window leaves the input)."""
    i = np.arange(g.m)[:, None]
    j = np.arange(g.k)[None, :]
    out_row, out_col = np.divmod(i, g.ofmap_w)
    in_row, in_col = out_row * g.stride_h, out_col * g.stride_w
    c_row, rest = np.divmod(j, g.filter_w * g.channels)
    c_col, c_ch = np.divmod(rest, g.channels)
    valid = (c_row + in_row < g.ifmap_h) & (c_col + in_col < g.ifmap_w)
    addr = ((c_row + in_row) * g.ifmap_w + (c_col + in_col)) * g.channels + c_ch
    return np.where(valid, addr, -1)


def filter_matrix(g: ScaleSimGeometry) -> np.ndarray:
    """``[K, N]`` weight addresses."""
    return np.arange(g.filters)[None, :] * g.k + np.arange(g.k)[:, None]


def _pad_cols(block: np.ndarray, width: int) -> np.ndarray:
    if block.shape[1] == width:
        return block
    out = np.full((block.shape[0], width), -1, dtype=np.int64)
    out[:, :block.shape[1]] = block
    return out


def _pad_rows(block: np.ndarray, height: int) -> np.ndarray:
    if block.shape[0] == height:
        return block
    out = np.full((height, block.shape[1]), -1, dtype=np.int64)
    out[:block.shape[0]] = block
    return out


def _col_folds(matrix: np.ndarray, width: int) -> list[np.ndarray]:
    """``matrix`` cut into column blocks of ``width`` (the last padded with ``-1``)."""
    return [_pad_cols(matrix[:, s:s + width], width) for s in range(0, matrix.shape[1], width)]


def _anti_diagonal_order(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """``(r, c)`` of a ``rows x cols`` matrix by anti-diagonal ``r + c``, ``r`` descending:
    SCALE-Sim's prefetch order for skewed operands, and the order in which a skewed fold's
    demand lines list its entries (line ``r + c``, column ``c`` ascending)."""
    diag = np.arange(rows + cols - 1)
    top = np.minimum(diag, rows - 1)
    length = top - np.maximum(0, diag - cols + 1) + 1
    starts = np.cumsum(length) - length
    d = np.repeat(diag, length)
    r = np.repeat(top, length) - (np.arange(rows * cols) - np.repeat(starts, length))
    c = d - r
    r.flags.writeable = False
    c.flags.writeable = False
    return r, c


# A layer's folds share one or two shapes: their orders are computed once (read-only arrays;
# a few entries, each at most a fold's size).
_fold_order = functools.lru_cache(maxsize=4)(_anti_diagonal_order)


def _diagonal_flatten(matrix: np.ndarray) -> np.ndarray:
    r, c = _anti_diagonal_order(*matrix.shape)
    return matrix[r, c]


@dataclass(frozen=True, slots=True)
class DemandStream:
    """The valid addresses one operand's demand matrix requests, in request order.

    Attributes:
        lines: ``[n]`` line (cycle without stalls) of each request, non-decreasing.
        addresses: ``[n]`` address of each request.
    """

    lines: np.ndarray
    addresses: np.ndarray


@dataclass(frozen=True, slots=True)
class LayerDemand:
    """Everything SCALE-Sim's memory system is given for one layer.

    Attributes:
        line_count: demand lines ``L`` (SCALE-Sim's compute cycles are ``L - 1``).
        ifmap_fetch / filter_fetch: prefetch matrices flattened in fetch order, ``-1`` padding
            kept (it is fetched).
        ifmap / filter: the read demand streams.
        ofmap_per_line: ``[L]`` output words each line writes.
    """

    line_count: int
    ifmap_fetch: np.ndarray
    filter_fetch: np.ndarray
    ifmap: DemandStream
    filter: DemandStream
    ofmap_per_line: np.ndarray


def _tile_stream(local_lines: list[np.ndarray], local_addr: list[np.ndarray], outer: int,
                 lines_per_fold: int) -> DemandStream:
    """Streams of the inner folds (``local_*[inner]``), repeated for ``outer`` outer folds;
    fold ``outer_index * inner + inner_index`` starts at line ``fold * lines_per_fold``."""
    inner = len(local_lines)
    lines, addrs = [], []
    for o in range(outer):
        for f in range(inner):
            base = (o * inner + f) * lines_per_fold
            lines.append(local_lines[f] + base)
            addrs.append(local_addr[f])
    return DemandStream(np.concatenate(lines), np.concatenate(addrs))


def _valid(lines: np.ndarray, addrs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = addrs >= 0
    return lines[keep], addrs[keep]


def _skewed_fold(block: np.ndarray, first_line: int) -> tuple[np.ndarray, np.ndarray]:
    """A fold SCALE-Sim skews: entry ``(r, c)`` of ``block`` is requested at line
    ``first_line + r + c``."""
    r, c = _fold_order(*block.shape)
    return _valid(first_line + r + c, block[r, c])


def _flipped_fold(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A stationary tile SCALE-Sim preloads unskewed and upside down: line ``t`` requests
    row ``rows - 1 - t``."""
    rows, cols = block.shape
    t = np.repeat(np.arange(rows), cols)
    return _valid(t, block[::-1].reshape(-1))


def _band(length: int, first: int, count_r: int, count_c: int) -> np.ndarray:
    """``[length]`` counts of the pairs ``(r, c)``, ``r < count_r``, ``c < count_c``, at line
    ``first + r + c``: how many outputs a skewed output tile writes each line."""
    t = np.arange(length) - first
    top = count_r + count_c - 2
    counts = np.minimum(np.minimum(t, top - t), min(count_r, count_c) - 1) + 1
    return np.where((t >= 0) & (t <= top), counts, 0).astype(np.int64)


def layer_demand(g: ScaleSimGeometry, rows: int, cols: int, dataflow: str) -> LayerDemand:
    """SCALE-Sim 3.0.0's prefetch and demand matrices for one layer on an ``rows x cols``
    array (``scalesim/compute/systolic_compute_{ws,os,is}.py``), as streams."""
    ifmap = ifmap_matrix(g)
    filt = filter_matrix(g)
    m, k, n = g.m, g.k, g.filters
    if dataflow == "ws":
        # Array rows hold K, columns N; M pixels stream.  Column folds outer, row folds inner.
        row_folds, col_folds = math.ceil(k / rows), math.ceil(n / cols)
        per_fold = 2 * rows + cols + m - 2
        if_blocks = _col_folds(ifmap, rows)                        # [M, rows] per row fold
        ifmap_fetch = _diagonal_flatten(np.vstack(if_blocks))
        filter_fetch = np.vstack(_col_folds(filt, cols)).reshape(-1)
        local = [_skewed_fold(b, rows) for b in if_blocks]
        ifmap_stream = _tile_stream([x[0] for x in local], [x[1] for x in local], col_folds,
                                    per_fold)
        f_lines, f_addr = [], []
        ofmap = np.zeros(row_folds * col_folds * per_fold, dtype=np.int64)
        for fc in range(col_folds):
            used_c = min(cols, n - fc * cols)
            written = _band(per_fold, 2 * rows - 1, m, used_c)
            for fr in range(row_folds):
                tile = _pad_rows(_pad_cols(filt[fr * rows:(fr + 1) * rows,
                                                fc * cols:(fc + 1) * cols], cols), rows)
                base = (fc * row_folds + fr) * per_fold
                t, a = _flipped_fold(tile)
                f_lines.append(t + base)
                f_addr.append(a)
                ofmap[base:base + per_fold] = written
        filter_stream = DemandStream(np.concatenate(f_lines), np.concatenate(f_addr))
        line_count = row_folds * col_folds * per_fold
    elif dataflow == "os":
        # Array rows hold M, columns N; K streams.  Column folds outer, row folds inner.
        row_folds, col_folds = math.ceil(m / rows), math.ceil(n / cols)
        per_fold = k + rows + cols - 2
        if_blocks = _col_folds(ifmap.T, rows)                      # [K, rows] per row fold
        f_blocks = _col_folds(filt, cols)                          # [K, cols] per col fold
        ifmap_fetch = _diagonal_flatten(np.vstack(if_blocks))
        filter_fetch = _diagonal_flatten(np.vstack(f_blocks))
        local = [_skewed_fold(b, 0) for b in if_blocks]
        ifmap_stream = _tile_stream([x[0] for x in local], [x[1] for x in local], col_folds,
                                    per_fold)
        f_lines, f_addr = [], []
        ofmap = np.zeros(row_folds * col_folds * per_fold, dtype=np.int64)
        for fc in range(col_folds):
            lf, af = _skewed_fold(f_blocks[fc], 0)
            used_c = min(cols, n - fc * cols)
            for fr in range(row_folds):
                base = (fc * row_folds + fr) * per_fold
                f_lines.append(lf + base)
                f_addr.append(af)
                used_r = min(rows, m - fr * rows)
                # Flipped tile: original row r sits at row rows - 1 - r, written at line
                # (k - 1) + (rows - 1 - r) + c.
                written = _band(per_fold, k - 1 + rows - used_r, used_r, used_c)
                ofmap[base:base + per_fold] = written
        filter_stream = DemandStream(np.concatenate(f_lines), np.concatenate(f_addr))
        line_count = row_folds * col_folds * per_fold
    elif dataflow == "is":
        # Array rows hold K, columns M; N filters stream.  Column folds outer, row folds inner.
        row_folds, col_folds = math.ceil(k / rows), math.ceil(m / cols)
        per_fold = 2 * rows + cols + n - 2
        ifmap_t = ifmap.T                                          # [K, M]
        ifmap_fetch = np.vstack(_col_folds(ifmap_t, cols)).reshape(-1)
        f_blocks = [_pad_cols(filt[s:s + rows].T, rows) for s in range(0, k, rows)]  # [N, rows]
        filter_fetch = _diagonal_flatten(np.vstack(f_blocks))
        local = [_skewed_fold(b, rows) for b in f_blocks]
        filter_stream = _tile_stream([x[0] for x in local], [x[1] for x in local], col_folds,
                                     per_fold)
        i_lines, i_addr = [], []
        ofmap = np.zeros(row_folds * col_folds * per_fold, dtype=np.int64)
        for fc in range(col_folds):
            used_c = min(cols, m - fc * cols)
            written = _band(per_fold, 2 * rows - 1, n, used_c)
            for fr in range(row_folds):
                tile = _pad_rows(_pad_cols(ifmap_t[fr * rows:(fr + 1) * rows,
                                                   fc * cols:(fc + 1) * cols], cols), rows)
                base = (fc * row_folds + fr) * per_fold
                t, a = _flipped_fold(tile)
                i_lines.append(t + base)
                i_addr.append(a)
                ofmap[base:base + per_fold] = written
        ifmap_stream = DemandStream(np.concatenate(i_lines), np.concatenate(i_addr))
        line_count = row_folds * col_folds * per_fold
    else:
        raise ConfigError("pe_array.dataflow", dataflow, "ws, os or is")
    return LayerDemand(line_count, ifmap_fetch, filter_fetch, ifmap_stream, filter_stream,
                       ofmap)


# ------------------------------------------------------------------------------------------
# Read buffers: which requests miss, and how many window jumps each needs (time-independent)


@dataclass(frozen=True, slots=True)
class ReadMisses:
    """The refills one read buffer makes, by demand line.

    Attributes:
        lines: lines with at least one miss, ascending.
        first_jump: index (from 1) of the line's first refill among the operand's refills.
        jumps: refills the line triggers (consecutive indices).
        refill_cycles: cycles one refill adds to the refill clock (``ceil(half / B) + 1``).
        initial_lines: ``B``-word rows of the first prefetch (it ends at cycle -1).
        dram_reads: words SCALE-Sim counts as read from DRAM (padding included).
    """

    lines: np.ndarray
    first_jump: np.ndarray
    jumps: np.ndarray
    refill_cycles: int
    initial_lines: int
    dram_reads: int


def read_misses(fetch: np.ndarray, demand: DemandStream, buffer_words: int,
                bandwidth: int) -> ReadMisses:
    """Replay ``read_buffer``'s window over ``demand`` (see the module docstring).

    Args:
        fetch: the prefetch matrix in fetch order, ``-1`` padding included.
        demand: the operand's requests.
        buffer_words: the whole (double) buffer, in words.
        bandwidth: words per cycle of this operand's DRAM port.
    """
    active = math.ceil(buffer_words * _ACTIVE_FRACTION)
    prefetch = buffer_words - active
    fetch_rows = -(-fetch.size // bandwidth)
    initial_lines = min(-(-active // bandwidth), fetch_rows)
    refill_lines = -(-prefetch // bandwidth)
    valid = fetch[fetch >= 0]
    per_set = -(-buffer_words // _SETS_PER_BUFFER)
    n_sets = valid.size // per_set + 1
    window = min(-(-active // per_set), n_sets)
    step = min(-(-prefetch // per_set), n_sets - window)
    empty = np.zeros(0, dtype=np.int64)
    if step == 0 or demand.addresses.size == 0:
        return ReadMisses(empty, empty, empty, refill_lines + _READ_LATENCY, initial_lines,
                          initial_lines * bandwidth)

    # Sets holding each address, found through dense tables indexed by address (addresses are
    # small non-negative integers) rather than per-request searches.  Most operands hold each
    # address once (weights; 1x1 and GEMM inputs); im2col inputs a few times (overlapping
    # windows): then the copies inside the window are counted per address as it moves, and a
    # request hits when its address's count is positive.
    top = int(max(valid.max(), demand.addresses.max()))
    copies_of = np.bincount(valid, minlength=top + 1)
    copies = int(copies_of.max())
    if copies > 1 and copies_of[demand.addresses].min() == 0:
        raise AssertionError("a demanded address is never prefetched (SCALE-Sim would loop)")
    set_ids = (np.arange(valid.size) // per_set).astype(np.int32)
    if copies == 1:
        set_of = np.full(top + 1, -1, dtype=np.int32)
        set_of[valid] = set_ids
        direct = set_of[demand.addresses]  # each request's one set
        if direct.min() < 0:
            raise AssertionError("a demanded address is never prefetched (SCALE-Sim would "
                                 "loop)")
        sets = None
        held = None
    else:
        order = np.argsort(valid, kind="stable")
        by_address = valid[order]
        first_copy = np.flatnonzero(np.diff(by_address, prepend=-1))
        rank = np.arange(valid.size) - np.repeat(first_copy, np.diff(np.append(first_copy,
                                                                              valid.size)))
        # [addresses, copies] set ids, short rows padded with their first set (a repeat
        # changes nothing).
        sets = np.zeros((top + 1, copies), dtype=np.int32)
        sets[by_address[first_copy], :] = set_ids[order][first_copy][:, None]
        sets[by_address, rank] = set_ids[order]
        direct = None
        held = np.zeros(top + 1, dtype=np.int32)

    def count_sets(first: int, count: int, sign: int) -> None:
        """Add ``sign`` for every copy in sets ``first .. first + count - 1`` (cyclic)."""
        first %= n_sets
        for a, b in ((first, min(first + count, n_sets)), (0, first + count - n_sets)):
            if b > a:
                part = valid[a * per_set:min(b * per_set, valid.size)]
                held[:] += sign * np.bincount(part, minlength=top + 1).astype(np.int32)

    if held is not None:
        count_sets(0, window, 1)

    def move(start: int, shift: int) -> None:
        if held is None or shift % n_sets == 0:
            return
        shift %= n_sets
        if shift < window:
            count_sets(start, shift, -1)
            count_sets(start + window, shift, 1)
        else:
            held[:] = 0
            count_sets(start + shift, window, 1)

    def hits(lo: int, hi: int, start: int) -> np.ndarray:
        """Which requests ``lo:hi`` the window starting at set ``start`` holds: set ``s`` is
        inside when ``(s - start) mod n < A``; with ``d = s - start`` in ``(-n, n)`` that is
        ``0 <= d < A`` or ``d < A - n`` (no modulo)."""
        if direct is None:
            return held[demand.addresses[lo:hi]] > 0
        d = direct[lo:hi] - np.int32(start)
        return (d < window - n_sets) | ((d >= 0) & (d < window))

    miss_pos: list[int] = []
    miss_jumps: list[int] = []
    start = 0
    pos = 0
    chunk = 4096
    total = demand.addresses.size
    jumps_to_try = np.arange(1, n_sets + 1, dtype=np.int64)
    while pos < total:
        hit = hits(pos, pos + chunk, start)
        if hit.all():
            pos += hit.size
            chunk = min(chunk * 2, 1 << 20)
            continue
        q = int(np.argmin(hit))
        copies_here = (direct[pos + q:pos + q + 1] if direct is not None
                       else sets[int(demand.addresses[pos + q])])
        # The fewest jumps that bring a copy into the window: nearly always one or two, so
        # those are tried first; a request behind the window may need a trip round it.
        for tries in (jumps_to_try[:4], jumps_to_try):
            inside = ((copies_here[None, :] - start - tries[:, None] * step) % n_sets) < window
            found = np.flatnonzero(inside.any(axis=1))
            if found.size:
                break
        else:
            raise AssertionError("window never reaches a prefetched address")
        k = int(tries[found[0]])
        move(start, k * step)
        start = (start + k * step) % n_sets
        miss_pos.append(pos + q)
        miss_jumps.append(k)
        pos += q + 1
        chunk = max(1024, 2 * q)
    if not miss_pos:
        return ReadMisses(empty, empty, empty, refill_lines + _READ_LATENCY, initial_lines,
                          initial_lines * bandwidth)
    lines = demand.lines[np.asarray(miss_pos)]
    jumps = np.asarray(miss_jumps, dtype=np.int64)
    unique_lines, first = np.unique(lines, return_index=True)
    per_line = np.add.reduceat(jumps, first)
    first_jump = np.cumsum(per_line) - per_line + 1
    dram = initial_lines * bandwidth + int(jumps.sum()) * refill_lines * bandwidth
    return ReadMisses(unique_lines, first_jump, per_line, refill_lines + _READ_LATENCY,
                      initial_lines, dram)


# ------------------------------------------------------------------------------------------
# Time: read stalls per line, the write buffer, the global stall


@dataclass(frozen=True, slots=True)
class ScaleSimLayerCycles:
    """SCALE-Sim 3.0.0's report for one layer in USER-bandwidth mode.

    Attributes:
        compute_cycles: last demand line without stalls (``L - 1``; CALC mode's figure).
        total_cycles: COMPUTE_REPORT ``Total Cycles`` (the last line's service cycle).
        stall_cycles: COMPUTE_REPORT ``Stall Cycles``.
        total_cycles_incl_prefetch: COMPUTE_REPORT ``Total Cycles (incl. prefetch)``: first
            DRAM read (negative: before cycle 0) to last DRAM write.
        ifmap_dram_start_cycle / filter_dram_start_cycle: first DRAM read of each operand.
        ofmap_dram_stop_cycle: last DRAM write.
        ifmap_dram_reads / filter_dram_reads / ofmap_dram_writes: words as SCALE-Sim counts
            them (whole ``B``-word rows of the prefetch stream, padding included).
    """

    compute_cycles: int
    total_cycles: int
    stall_cycles: int
    total_cycles_incl_prefetch: int
    ifmap_dram_start_cycle: int
    filter_dram_start_cycle: int
    ofmap_dram_stop_cycle: int
    ifmap_dram_reads: int
    filter_dram_reads: int
    ofmap_dram_writes: int


def read_stall(misses: ReadMisses, index: int, cycle: int) -> int:
    """``service_reads`` for a line issued at ``cycle`` whose misses are ``misses``' entry
    ``index``: the refills complete at fixed cycles; a late one is counted twice."""
    t = cycle + _READ_LATENCY
    first = int(misses.first_jump[index])
    for j in range(first, first + int(misses.jumps[index])):
        ready = -1 + j * misses.refill_cycles
        t = 2 * ready - t if ready > t else ready
    return t - cycle - _READ_LATENCY


class _WriteBuffer:
    """``write_buffer.service_writes`` / ``empty_drain_buf`` with words counted, not listed."""

    def __init__(self, words: int, bandwidth: int):
        self.total = words
        self.active = math.ceil(words * _ACTIVE_FRACTION)
        self.drain_words = words - self.active
        self.bandwidth = bandwidth
        self.rows_per_drain = -(-self.drain_words // bandwidth)
        self.free = words
        self.rows = 0              # complete rows handed to the drain queue
        self.row_fill = 0          # words in the row being filled
        self.partial: dict[int, int] = {}  # row -> words, for rows flushed before full
        self.next_row = 0          # first row not drained yet
        self.drain_end = 0
        self.last_write = -math.inf
        self.written = 0

    def store(self, count: int) -> None:
        """``count`` words arrive with no drain start and no wait among them."""
        self.free -= count
        filled = self.row_fill + count
        self.rows += filled // self.bandwidth
        self.row_fill = filled % self.bandwidth

    def _flush(self) -> None:
        if self.row_fill:
            self.partial[self.rows] = self.row_fill
            self.rows += 1
            self.row_fill = 0

    def _drain(self, start: float) -> float:
        end_row = min(self.next_row + self.rows_per_drain, self.rows)
        count = end_row - self.next_row
        if count <= 0:
            raise AssertionError("SCALE-Sim drains an empty write buffer (it would crash)")
        words = count * self.bandwidth - (self.bandwidth
                                          - self.partial.get(end_row - 1, self.bandwidth))
        self.written += words
        self.free += words
        self.next_row = end_row
        end = start + count - 1
        self.last_write = max(self.last_write, end)
        return end

    def line(self, cycle: int, count: int) -> int:
        """Serve one line of ``count`` words issued at ``cycle``; return its wait (cycles)."""
        current = cycle
        for _ in range(count):
            self.store(1)
            if current < self.drain_end:
                if self.free <= 0:
                    current = self.drain_end
            elif self.free < self.active:
                self._flush()
                self.drain_end = self._drain(current)
        return current - cycle

    def empty(self, cycle: int) -> None:
        """``empty_all_buffers``: drain what is left, one drain after another."""
        self._flush()
        while self.next_row < self.rows:
            cycle = self._drain(cycle) + 1


def simulate_scalesim_layer(layer: Conv2d | Linear, hw: Hardware) -> ScaleSimLayerCycles:
    """SCALE-Sim 3.0.0's USER-mode cycles for one dense layer on ``hw``.

    Every operand port moves ``hw.dram.bandwidth_words_per_cycle`` words a cycle (what
    :func:`hw_sim.scalesim_files.write_scalesim_cfg` writes: ``Bandwidth`` and both
    ``SRAMBankBandwidth`` keys equal).

    Raises:
        ConfigError: the layer or the hardware is one SCALE-Sim's memory system cannot run
            (see :func:`geometry_of`, :func:`check_scalesim_hardware`), or the bandwidth is
            unlimited (SCALE-Sim's CALC mode has no memory model to reproduce).
    """
    bandwidth = hw.dram.bandwidth_words_per_cycle
    if bandwidth is None:
        raise ConfigError("dram.bandwidth_words_per_cycle", None,
                          "a number of words per cycle with memory_model 'scalesim' in this "
                          "function (unlimited bandwidth never stalls)")
    check_scalesim_hardware(hw)
    g = geometry_of(layer)
    arr = hw.pe_array
    demand = layer_demand(g, arr.rows, arr.cols, arr.dataflow)
    ifmap = read_misses(demand.ifmap_fetch, demand.ifmap, hw.sram_words("ifmap"), bandwidth)
    filt = read_misses(demand.filter_fetch, demand.filter, hw.sram_words("filter"), bandwidth)
    writes = _WriteBuffer(hw.sram_words("ofmap"), bandwidth)

    per_line = demand.ofmap_per_line
    cum = np.concatenate(([0], np.cumsum(per_line)))
    read_lines = np.union1d(ifmap.lines, filt.lines)
    if_index = {int(line): i for i, line in enumerate(ifmap.lines)}
    f_index = {int(line): i for i, line in enumerate(filt.lines)}
    total_lines = demand.line_count
    stall = 0
    line = 0
    last_out = 0
    r = 0  # next entry of read_lines
    while line < total_lines:
        while r < read_lines.size and read_lines[r] < line:
            r += 1
        event = int(read_lines[r]) if r < read_lines.size else total_lines
        base = int(cum[line])
        boundary = writes.drain_end - stall  # lines before it are issued before the drain ends
        if boundary > line:
            need = max(base + writes.free, base + 1)
            full = int(np.searchsorted(cum, need, side="left")) - 1
            if full < boundary:
                event = min(event, full)
        first = max(line, math.ceil(boundary))
        if first < total_lines:
            need = max(base + writes.free - writes.active + 1, int(cum[first]) + 1)
            drain = int(np.searchsorted(cum, need, side="left")) - 1
            if drain < total_lines:
                event = min(event, max(drain, first))
        event = min(event, total_lines)
        if event > line:  # quiet lines: no miss, no drain start, no wait
            writes.store(int(cum[event] - base))
            last_out = event - 1 + stall
            line = event
            continue
        cycle = line + stall
        wait = writes.line(cycle, int(per_line[line]))
        read = max(read_stall(ifmap, if_index[line], cycle) if line in if_index else 0,
                   read_stall(filt, f_index[line], cycle) if line in f_index else 0)
        last_out = cycle + wait
        stall += max(read, wait, 0)
        line += 1
    writes.empty(last_out)
    first_read = min(-ifmap.initial_lines, -filt.initial_lines)
    return ScaleSimLayerCycles(
        compute_cycles=total_lines - 1,
        total_cycles=int(last_out),
        stall_cycles=int(stall),
        total_cycles_incl_prefetch=int(writes.last_write - first_read),
        ifmap_dram_start_cycle=-ifmap.initial_lines,
        filter_dram_start_cycle=-filt.initial_lines,
        ofmap_dram_stop_cycle=int(writes.last_write),
        ifmap_dram_reads=ifmap.dram_reads,
        filter_dram_reads=filt.dram_reads,
        ofmap_dram_writes=writes.written,
    )


# ------------------------------------------------------------------------------------------
# The two memory models side by side


@dataclass(frozen=True, slots=True)
class MemoryAccount:
    """Where one layer's cycles go under each memory model (SCALE-Sim's cycle convention).

    Both totals split the same way: ``total = lead + compute + stall + tail``, with ``lead``
    the cycles spent before the first compute cycle (the default model's prologue; SCALE-Sim's
    first prefetch, which it places before cycle 0) and ``tail`` those after the last compute
    line (the default model's epilogue; SCALE-Sim's drains after its last line).  ``stall``
    is what each model counts as such: the default model's stalls *excluding* prologue and
    epilogue (it reports them included), SCALE-Sim's ``Stall Cycles``.
    """

    compute_cycles: int
    default_total_cycles: int
    default_stall_cycles: int
    default_lead_cycles: int
    default_tail_cycles: int
    scalesim_total_cycles: int
    scalesim_stall_cycles: int
    scalesim_lead_cycles: int
    scalesim_tail_cycles: int


def memory_account(layer: Conv2d | Linear, hw: Hardware,
                   scalesim: ScaleSimLayerCycles | None = None) -> MemoryAccount:
    """Both memory models on one dense layer: totals, stalls, leads and tails.

    Args:
        layer: a dense layer.
        hw: the hardware (finite bandwidth); its ``memory_model`` is not read.
        scalesim: the layer's :func:`simulate_scalesim_layer` result, if already computed.

    Raises:
        ConfigError: as :func:`simulate_scalesim_layer`.
    """
    if scalesim is None:
        scalesim = simulate_scalesim_layer(layer, hw)
    bandwidth = hw.dram.bandwidth_words_per_cycle
    unit = engine_for(layer, hw)
    runs = unit.plan(layer, hw, False)
    cycles = [unit.step_cost(run.work, hw)[0] for run in runs]
    timeline = memory_timeline(runs, cycles, bandwidth)
    lead = transfer_cycles(runs[0].load_words, bandwidth)
    tail = transfer_cycles(runs[-1].store_words, bandwidth)
    total = scalesim.total_cycles_incl_prefetch
    scalesim_lead = -min(scalesim.ifmap_dram_start_cycle, scalesim.filter_dram_start_cycle)
    return MemoryAccount(
        compute_cycles=timeline.compute_cycles,
        default_total_cycles=timeline.total_cycles,
        default_stall_cycles=timeline.stall_cycles - lead - tail,
        default_lead_cycles=lead,
        default_tail_cycles=tail,
        scalesim_total_cycles=total,
        scalesim_stall_cycles=scalesim.stall_cycles,
        scalesim_lead_cycles=scalesim_lead,
        scalesim_tail_cycles=total - scalesim_lead - scalesim.total_cycles,
    )
