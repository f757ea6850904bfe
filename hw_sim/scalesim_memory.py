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
  address sequences, not on time, so it is found without listing the requests (a layer
  makes millions): each request is named by its *own copy*'s rank in the fetch stream, and
  the demand is written in closed form as *segments* of consecutive ranks (a skewed fold's
  anti-diagonal, a stationary tile's row), repeated fold passes kept once.  Requests then
  come in *runs* with one own set; a run whose set is inside the window hits, so only the
  runs outside it are looked at: a distinct address misses there, an address fetched
  several times (im2col inputs) is looked up in a table of the addresses the window
  holds.  A pass over the demand that starts where an earlier pass started repeats its
  misses.  Jump ``j`` of an operand completes at the fixed cycle
  ``Lp_j = -1 + j (ceil(half / B) + 1)``: SCALE-Sim issues each refill right after the
  previous one, whatever the array is doing.
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
from collections.abc import Callable
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
    def windows_inside(self) -> bool:
        """Every window lies inside the (padded) input: no ceil-mode window leaves it, so
        every im2col entry is a valid address."""
        return ((self.ofmap_h - 1) * self.stride_h + self.filter_h <= self.ifmap_h
                and (self.ofmap_w - 1) * self.stride_w + self.filter_w <= self.ifmap_w)

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
# operand has its own buffer, so only equality within an operand matters.  Addresses and
# lines are int32 when they fit (halving the memory traffic of streams of millions).


def _index_dtype(bound: int) -> type:
    """The narrowest of int32/int64 that holds ``0 .. bound``."""
    return np.int32 if bound < 2**31 else np.int64


def ifmap_matrix(g: ScaleSimGeometry, transposed: bool = False) -> np.ndarray:
    """``[M, K]`` im2col addresses (``-1`` where a ceil-mode window leaves the input), or
    ``[K, M]`` when ``transposed`` (built so, contiguous).

    Address ``((out_row * s_h + c_row) * W + out_col * s_w + c_col) * C + ch`` splits into a
    term of the output pixel and one of the window offset: one broadcast sum.
    """
    dtype = _index_dtype(g.ifmap_h * g.ifmap_w * g.channels)
    out_row, out_col = np.divmod(np.arange(g.m, dtype=dtype), g.ofmap_w)
    c_row, rest = np.divmod(np.arange(g.k, dtype=dtype), g.filter_w * g.channels)
    c_col, c_ch = np.divmod(rest, g.channels)
    pixel = (out_row * g.stride_h * g.ifmap_w + out_col * g.stride_w) * g.channels
    offset = (c_row * g.ifmap_w + c_col) * g.channels + c_ch
    addr = offset[:, None] + pixel[None, :] if transposed else pixel[:, None] + offset[None, :]
    # Only the last output rows and columns' windows can leave the input: their entries
    # whose window row (column) lies outside are invalid, set one output row (column) at a
    # time.
    view = addr.T if transposed else addr  # [M, K]
    for out_y in range(-(-(g.ifmap_h - g.filter_h + 1) // g.stride_h), g.ofmap_h):
        outside = np.flatnonzero(out_y * g.stride_h + c_row >= g.ifmap_h)
        view[out_y * g.ofmap_w:(out_y + 1) * g.ofmap_w, outside] = -1
    for out_x in range(-(-(g.ifmap_w - g.filter_w + 1) // g.stride_w), g.ofmap_w):
        outside = np.flatnonzero(out_x * g.stride_w + c_col >= g.ifmap_w)
        view[out_x::g.ofmap_w, outside] = -1
    return addr


def filter_matrix(g: ScaleSimGeometry) -> np.ndarray:
    """``[K, N]`` weight addresses."""
    dtype = _index_dtype(g.k * g.filters)
    return np.arange(g.filters, dtype=dtype)[None, :] * g.k + np.arange(g.k, dtype=dtype)[:, None]


def _folds(matrix: np.ndarray, width: int) -> np.ndarray:
    """``matrix`` ``[R, W]`` cut into column blocks of ``width``: ``[F, R, width]``, the last
    block padded with ``-1`` (one copy)."""
    rows, cols = matrix.shape
    count = -(-cols // width)
    full = cols // width
    out = np.empty((count, rows, width), dtype=matrix.dtype)
    out[:full] = matrix[:, :full * width].reshape(rows, full, width).transpose(1, 0, 2)
    if full < count:
        out[full, :, :cols - full * width] = matrix[:, full * width:]
        out[full, :, cols - full * width:] = -1
    return out


def _tiles(matrix: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """``matrix`` cut into ``rows x cols`` tiles, column folds outer and row folds inner:
    ``[col_folds * row_folds, rows, cols]``, padded with ``-1``."""
    height, width = matrix.shape
    row_folds, col_folds = -(-height // rows), -(-width // cols)
    padded = np.full((row_folds * rows, col_folds * cols), -1, dtype=matrix.dtype)
    padded[:height, :width] = matrix
    return padded.reshape(row_folds, rows, col_folds, cols).transpose(2, 0, 1, 3).reshape(
        col_folds * row_folds, rows, cols)


@functools.lru_cache(maxsize=8)
def _anti_diagonal_order(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """``(r, c)`` of a ``rows x cols`` matrix by anti-diagonal ``r + c``, ``r`` descending:
    SCALE-Sim's prefetch order for skewed operands, and the order in which a skewed fold's
    demand lines list its entries (line ``r + c``, column ``c`` ascending).  Read-only,
    cached: a layer's folds share one or two shapes."""
    diag = np.arange(rows + cols - 1)
    top = np.minimum(diag, rows - 1)
    length = top - np.maximum(0, diag - cols + 1) + 1
    starts = np.cumsum(length) - length
    r = np.repeat(top, length) - (np.arange(rows * cols) - np.repeat(starts, length))
    c = np.repeat(diag, length) - r
    r.flags.writeable = False
    c.flags.writeable = False
    return r, c


@functools.lru_cache(maxsize=8)
def _anti_diagonal_index(rows: int, cols: int) -> np.ndarray:
    """``[rows * cols]`` ``r + c`` of each entry in :func:`_anti_diagonal_order` (read-only)."""
    diag = np.arange(rows + cols - 1)
    length = np.minimum(diag, rows - 1) - np.maximum(0, diag - cols + 1) + 1
    index = np.repeat(diag, length)
    index.flags.writeable = False
    return index


def _full_diagonals(stack: np.ndarray, writeable: bool = False) -> np.ndarray:
    """``[F, R - C + 1, C]`` strided view of the full anti-diagonals ``C - 1 .. R - 1`` of
    each tall ``[R, C]`` matrix of the contiguous ``stack`` (row ``d - j``, column ``j``)."""
    count, rows, cols = stack.shape
    step_f, step_r, step_c = stack.strides
    return np.lib.stride_tricks.as_strided(stack[:, cols - 1:, :],
                                           shape=(count, rows - cols + 1, cols),
                                           strides=(step_f, step_r, step_c - step_r),
                                           writeable=writeable)


def _anti_diagonals(stack: np.ndarray) -> np.ndarray:
    """``[F, R, C]`` -> ``[F, R * C]``: each matrix's entries in :func:`_anti_diagonal_order`.

    A tall matrix (``R >= C``) has full anti-diagonals from ``C - 1`` to ``R - 1``; they are
    read as one strided view (:func:`_full_diagonals`), only the two triangles at the ends by
    index (those of a ``C x C`` matrix), so no index array as large as the matrix is built.
    """
    count, rows, cols = stack.shape
    if rows < cols:
        r, c = _anti_diagonal_order(rows, cols)
        return stack[:, r, c]
    stack = np.ascontiguousarray(stack)
    out = np.empty((count, rows * cols), dtype=stack.dtype)
    r, c = _anti_diagonal_order(cols, cols)
    head, tail = cols * (cols - 1) // 2, (rows - cols + 1) * cols + cols * (cols - 1) // 2
    out[:, :head] = stack[:, r[:head], c[:head]]
    np.copyto(out[:, head:tail].reshape(count, rows - cols + 1, cols), _full_diagonals(stack))
    out[:, tail:] = stack[:, r[head + cols:] + rows - cols, c[head + cols:]]
    return out


def _anti_diagonals_inverse(flat: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The ``rows x cols`` matrix whose :func:`_anti_diagonals` is ``flat`` (the same three
    parts, written instead of read)."""
    out = np.empty((1, rows, cols), dtype=flat.dtype)
    if rows < cols:
        r, c = _anti_diagonal_order(rows, cols)
        out[0, r, c] = flat
        return out[0]
    r, c = _anti_diagonal_order(cols, cols)
    head, tail = cols * (cols - 1) // 2, (rows - cols + 1) * cols + cols * (cols - 1) // 2
    out[0, r[:head], c[:head]] = flat[:head]
    _full_diagonals(out, writeable=True)[0] = flat[head:tail].reshape(rows - cols + 1, cols)
    out[0, r[head + cols:] + rows - cols, c[head + cols:]] = flat[tail:]
    return out[0]


@dataclass(frozen=True, slots=True)
class _Prefetch:
    """How SCALE-Sim lays an operand matrix out in its prefetch stream: cut into column
    blocks of ``width`` (the last padded with ``-1``), the blocks stacked, and the stack read
    by anti-diagonal (``skewed``) or row by row."""

    width: int
    skewed: bool

    def order(self, matrix: np.ndarray) -> np.ndarray:
        """``matrix``'s entries in prefetch order, padding included."""
        blocks = _folds(matrix, self.width)
        if self.skewed:
            return _anti_diagonals(blocks.reshape(1, -1, self.width))[0]
        return blocks.reshape(-1)

    def inverse(self, flat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """The ``shape`` matrix whose :meth:`order` is ``flat``."""
        rows, cols = shape
        count = -(-cols // self.width)
        stack = (_anti_diagonals_inverse(flat, count * rows, self.width) if self.skewed
                 else flat.reshape(count * rows, self.width))
        return stack.reshape(count, rows, self.width).transpose(1, 0, 2).reshape(
            rows, count * self.width)[:, :cols]

    def invalid_ranks(self, fetch: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """Where the invalid entries of the ``shape`` matrix whose prefetch stream is
        ``fetch`` lie among the stream's non-padding words, ascending (the ranks a closed
        form that takes every entry as valid gives them)."""
        if shape[1] % self.width:
            fetch = fetch[self.order(np.zeros(shape, dtype=np.int8)) >= 0]
        return np.flatnonzero(fetch < 0)

    def ranks(self, fetch: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """For each entry of the ``shape`` matrix whose prefetch stream is ``fetch``, its rank
        among the stream's valid words (``-1`` where it is invalid)."""
        keep = fetch >= 0
        dtype = _index_dtype(fetch.size)
        position = np.cumsum(keep, dtype=dtype) - 1
        return self.inverse(np.where(keep, position, dtype(-1)), shape)


def _requests(lines: np.ndarray, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The requests of valid entries (padding ``-1`` is not requested), flattened."""
    if ranks.min() >= 0:
        return lines.reshape(-1), ranks.reshape(-1)
    keep = ranks >= 0
    return lines[keep], ranks[keep]


def _skewed(blocks: np.ndarray, first_line: int, fold_lines: int,
            ) -> tuple[np.ndarray, np.ndarray]:
    """Folds SCALE-Sim skews, one after another, request by request: entry ``(r, c)`` of
    ``blocks[f]`` is requested at line ``f * fold_lines + first_line + r + c``."""
    count, rows, cols = blocks.shape
    diag = _anti_diagonal_index(rows, cols)
    lines = (np.arange(count) * fold_lines)[:, None] + (diag + first_line)
    return _requests(lines, _anti_diagonals(blocks))


def _flipped(tiles: np.ndarray, fold_lines: int) -> tuple[np.ndarray, np.ndarray]:
    """Stationary tiles SCALE-Sim preloads unskewed and upside down, one after another,
    request by request: tile ``f``'s line ``t`` (``f * fold_lines + t``) requests its row
    ``rows - 1 - t``."""
    count, rows, cols = tiles.shape
    t = np.repeat(np.arange(rows), cols)
    lines = (np.arange(count) * fold_lines)[:, None] + t
    return _requests(lines, tiles[:, ::-1, :].reshape(count, rows * cols))


def _skewed_segments(rows_m: int, cols_m: int, width: int, blocks: np.ndarray,
                     line_base: np.ndarray, first_line: int) -> DemandStream:
    """The demand of skewed blocks in closed form, without listing requests.

    A ``rows_m x cols_m`` matrix (every entry valid) is cut into column blocks of ``width``
    (the last one padded), the blocks are stacked (``height`` rows) and prefetched by
    anti-diagonal (:func:`_anti_diagonals`).  Block ``blocks[i]``'s anti-diagonal ``e``
    (entries ``(r, c)``, ``r + c = e``, ``c`` ascending) is requested at line ``line_base[i] +
    first_line + e``.  Its entries lie on the stack's anti-diagonal ``d = f rows_m + e`` at
    consecutive positions ``start(d) + min(d, height - 1) - (d - c)``: one segment, whose
    first rank is that position less the padding words before it.
    """
    count = -(-cols_m // width)
    last = cols_m - (count - 1) * width
    height = count * rows_m
    diagonals = np.arange(height + width - 1)
    length_of = np.minimum(diagonals, height - 1) - np.maximum(0, diagonals - width + 1) + 1
    start_of = np.cumsum(length_of) - length_of
    f = np.asarray(blocks, dtype=np.int64)[:, None]
    e = np.arange(rows_m + width - 1)[None, :]
    c_lo = np.maximum(0, e - rows_m + 1)
    c_hi = np.minimum(e, np.where(f == count - 1, last, width) - 1)
    d = f * rows_m + e
    rank = start_of[d] + np.minimum(d, height - 1) - (d - c_lo)
    if last < width:
        # Padding: columns last .. width - 1 of the last block's rows low .. height - 1.
        low = (count - 1) * rows_m
        padding = np.maximum(0, np.minimum(width - 1, diagonals - low)
                             - np.maximum(last, diagonals - height + 1) + 1)
        before = np.cumsum(padding) - padding
        same = np.maximum(0, np.minimum(c_lo - 1, d - low) - np.maximum(last, d - height + 1)
                          + 1)
        rank = rank - before[d] - same
    lines = np.asarray(line_base, dtype=np.int64)[:, None] + first_line + e
    keep = c_hi >= c_lo
    return DemandStream(lines[keep], rank[keep], (c_hi - c_lo + 1)[keep])


def _flipped_segments(rows_m: int, cols_m: int, rows: int, cols: int,
                      fold_lines: int) -> DemandStream:
    """The demand of flipped tiles in closed form, without listing requests.

    A ``rows_m x cols_m`` matrix (every entry valid) is cut into ``rows x cols`` tiles, column
    folds outer; tile ``q`` line ``t`` (``q * fold_lines + t``) requests its row
    ``rows - 1 - t``: one segment.  The prefetch holds the column blocks of ``cols`` (the last
    one padded) stacked and read row by row, so a tile row is consecutive words there.
    """
    col_folds, row_folds = -(-cols_m // cols), -(-rows_m // rows)
    last = cols_m - (col_folds - 1) * cols
    fc = np.arange(col_folds)[:, None, None]
    fr = np.arange(row_folds)[None, :, None]
    t = np.arange(rows)[None, None, :]
    row = fr * rows + rows - 1 - t
    in_last = fc == col_folds - 1
    rank = (fc * rows_m + row) * cols - np.where(in_last, row * (cols - last), 0)
    lines = (fc * row_folds + fr) * fold_lines + t
    width = np.where(in_last, last, cols)
    shape = (col_folds, row_folds, rows)
    keep = np.broadcast_to(row < rows_m, shape)
    return DemandStream(np.broadcast_to(lines, shape)[keep], np.broadcast_to(rank, shape)[keep],
                        np.broadcast_to(width, shape)[keep])


def _per_block(stream: DemandStream, first_lines: np.ndarray) -> list[DemandStream]:
    """``stream`` cut before the first segment at or after each line of ``first_lines``
    (ascending): blocks computed together, requested as separate parts."""
    cuts = np.searchsorted(stream.lines, first_lines, side="left")
    return [DemandStream(stream.lines[a:b], stream.ranks[a:b], stream.lengths[a:b])
            for a, b in zip([0, *cuts], [*cuts, stream.lines.size], strict=True)]


def _repeated(stream: DemandStream, times: int, span: int) -> DemandStream:
    """``stream`` (one pass) requested ``times`` times, pass ``i`` shifted ``i * span``
    lines."""
    return DemandStream(stream.lines, stream.ranks, stream.lengths, times, span)


def _band(length: int, first: int, count_r: int, count_c: int) -> np.ndarray:
    """``[length]`` counts of the pairs ``(r, c)``, ``r < count_r``, ``c < count_c``, at line
    ``first + r + c``: how many outputs a skewed output tile writes each line."""
    t = np.arange(length) - first
    top = count_r + count_c - 2
    counts = np.minimum(np.minimum(t, top - t), min(count_r, count_c) - 1) + 1
    return np.where((t >= 0) & (t <= top), counts, 0).astype(np.int64)


def _last_smaller(total: int, size: int, folds: int) -> list[tuple[slice, int]]:
    """Fold index ranges and the extent each uses: all ``size`` but maybe the last."""
    last = total - (folds - 1) * size
    if last == size:
        return [(slice(0, folds), size)]
    return [(slice(0, folds - 1), size), (slice(folds - 1, folds), last)]


@dataclass(frozen=True, slots=True)
class DemandStream:
    """The requests one operand's demand matrix makes, in request order, as *segments*: one
    pass of segments requested ``times`` times (pass ``i`` shifted ``i * span`` lines).

    A request is named by its *own copy* in the operand's prefetch stream: the rank of the
    same operand-matrix entry among the stream's valid (non-padding) words.  Its address is
    that word's; an address fetched more than once (im2col inputs) may also hit through
    another copy.  Segment ``i`` is ``lengths[i]`` requests at line ``lines[i]`` of the
    consecutive ranks ``ranks[i] ..``: a skewed fold's anti-diagonal, a stationary tile's row.
    Kept unrepeated and unlisted: a layer makes millions of requests.

    Attributes:
        lines: ``[s]`` line (cycle without stalls) of each segment, non-decreasing.
        ranks: ``[s]`` own copy of each segment's first request.
        lengths: ``[s]`` requests in each segment (positive).
        times: passes.
        span: lines from one pass to the next (``>= lines[-1] - lines[0] + 1``).
    """

    lines: np.ndarray
    ranks: np.ndarray
    lengths: np.ndarray
    times: int = 1
    span: int = 0

    @classmethod
    def of_requests(cls, lines: np.ndarray, ranks: np.ndarray) -> DemandStream:
        """One pass given request by request (``[n]`` lines and own-copy ranks)."""
        lines, ranks = np.asarray(lines, dtype=np.int64), np.asarray(ranks, dtype=np.int64)
        if lines.size == 0:
            return cls(lines, ranks, lines)
        new = np.ones(lines.size, dtype=bool)
        new[1:] = (np.diff(lines) != 0) | (np.diff(ranks) != 1)
        first = np.flatnonzero(new)
        return cls(lines[first], ranks[first], np.diff(np.append(first, lines.size)))

    def without(self, invalid: np.ndarray) -> DemandStream:
        """This stream with the requests of the ranks ``invalid`` (ascending) taken out and
        the ranks after them closed up: a segment's remaining requests are still
        consecutive."""
        before = np.searchsorted(invalid, self.ranks)
        lengths = self.lengths - (np.searchsorted(invalid, self.ranks + self.lengths) - before)
        keep = lengths > 0
        return DemandStream(self.lines[keep], (self.ranks - before)[keep], lengths[keep],
                            self.times, self.span)

    def flat(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lines, ranks)`` of every request, the segments and passes written out."""
        starts = np.cumsum(self.lengths) - self.lengths
        offset = np.arange(int(self.lengths.sum())) - np.repeat(starts, self.lengths)
        lines = np.repeat(self.lines, self.lengths)
        ranks = np.repeat(self.ranks, self.lengths) + offset
        shift = np.arange(self.times, dtype=np.int64)[:, None] * self.span
        return (lines[None, :] + shift).reshape(-1), np.tile(ranks, self.times)


@dataclass(frozen=True)
class OperandDemand:
    """One read operand as SCALE-Sim's read buffer sees it: its prefetch stream and its
    demand.

    Attributes:
        fetch_words: words of the prefetch stream, padding included (SCALE-Sim fetches it).
        valid_words: its valid words (the ranks ``0 .. valid_words - 1``).
        distinct: no address is in the stream twice.
        parts: the demand, parts requested one after another.
        stream: builds the prefetch stream (``[fetch_words]`` addresses, ``-1`` padding) on
            demand; it is large, so it is built only when a lookup needs it.
    """

    fetch_words: int
    valid_words: int
    distinct: bool
    parts: tuple[DemandStream, ...]
    stream: Callable[[], np.ndarray]

    @classmethod
    def of_fetch(cls, fetch: np.ndarray, parts: tuple[DemandStream, ...]) -> OperandDemand:
        """An operand given by its prefetch stream itself (``[n]`` addresses, ``-1``
        padding)."""
        fetch = np.asarray(fetch)
        valid = fetch[fetch >= 0]
        distinct = valid.size == 0 or int(np.bincount(valid).max()) == 1
        return cls(fetch.size, valid.size, distinct, parts, lambda: fetch)

    def fetch(self) -> np.ndarray:
        """``[fetch_words]`` addresses in prefetch order, ``-1`` padding included."""
        return self.stream()

    def valid_addresses(self) -> np.ndarray:
        """``[valid_words]`` the valid addresses in prefetch order (rank -> address)."""
        fetch = self.fetch()
        return fetch if fetch.size == self.valid_words else fetch[fetch >= 0]


@dataclass(frozen=True)
class LayerDemand:
    """Everything SCALE-Sim's memory system is given for one layer.

    Attributes:
        line_count: demand lines ``L`` (SCALE-Sim's compute cycles are ``L - 1``).
        ifmap / filter: the read operands.
        ofmap_per_line: ``[L]`` output words each line writes.
    """

    line_count: int
    ifmap: OperandDemand
    filter: OperandDemand
    ofmap_per_line: np.ndarray


def _operand(matrix: Callable[[], np.ndarray], shape: tuple[int, int], layout: _Prefetch,
             distinct: bool, closed: Callable[[], tuple[DemandStream, ...]],
             listed: Callable[[np.ndarray], tuple[DemandStream, ...]], *, listing: bool,
             complete: bool = True) -> OperandDemand:
    """An operand from its closed-form demand (``closed``), or from its matrix's ranks
    request by request (``listed``) when ``listing``.  ``complete``: every matrix entry is
    valid; else the closed form's ranks count the invalid entries (ceil-mode windows), and
    they are taken out."""
    rows_m, cols_m = shape
    words = -(-cols_m // layout.width) * layout.width * rows_m
    # Built once: the invalid entries, the listed demand and the lookups all read it.
    stream = functools.cache(lambda: layout.order(matrix()))
    if listing:
        fetch = stream()
        return OperandDemand(words, int(np.count_nonzero(fetch >= 0)), distinct,
                             listed(layout.ranks(fetch, shape)), stream)
    if complete:
        return OperandDemand(words, rows_m * cols_m, distinct, closed(), stream)
    invalid = layout.invalid_ranks(stream(), shape)
    return OperandDemand(words, rows_m * cols_m - invalid.size, distinct,
                         tuple(part.without(invalid) for part in closed()), stream)


def layer_demand(g: ScaleSimGeometry, rows: int, cols: int, dataflow: str, *,
                 listed: bool = False) -> LayerDemand:
    """SCALE-Sim 3.0.0's prefetch and demand matrices for one layer on an ``rows x cols``
    array (``scalesim/compute/systolic_compute_{ws,os,is}.py``), as segments.

    In every dataflow the column folds are outer and the row folds inner; fold ``f`` (in that
    order) starts at line ``f * per_fold``.  ``listed``: build every operand request by
    request from its matrix, never in closed form (slow; what the closed forms must equal).
    """
    if dataflow not in ("ws", "os", "is"):
        raise ConfigError("pe_array.dataflow", dataflow, "ws, os or is")
    m, k, n = g.m, g.k, g.filters
    # (reduction along the array's rows, the other operand's extent along its columns, the
    # streamed extent)
    row_extent, col_extent, streamed = {"ws": (k, n, m), "os": (m, n, k),
                                        "is": (k, m, n)}[dataflow]
    row_folds, col_folds = -(-row_extent // rows), -(-col_extent // cols)
    # os streams K with the array's skew once; ws and is preload a tile (rows lines) first.
    per_fold = k + rows + cols - 2 if dataflow == "os" else 2 * rows + cols + streamed - 2
    line_count = row_folds * col_folds * per_fold
    every_row_fold = row_folds * per_fold
    fold_starts = np.arange(row_folds) * per_fold
    # Two windows share an input word only when the filter is larger than its stride along a
    # dimension with more than one output.
    overlapping = ((g.filter_h > g.stride_h and g.ofmap_h > 1)
                   or (g.filter_w > g.stride_w and g.ofmap_w > 1))
    ofmap = np.zeros((col_folds, row_folds, per_fold), dtype=np.int64)

    def skewed_listed(first_line: int) -> Callable[[np.ndarray], tuple[DemandStream, ...]]:
        return lambda ranks: (_repeated(DemandStream.of_requests(
            *_skewed(_folds(ranks, rows), first_line, per_fold)), col_folds, every_row_fold),)

    def flipped_listed(ranks: np.ndarray) -> tuple[DemandStream, ...]:
        return (DemandStream.of_requests(*_flipped(_tiles(ranks, rows, cols), per_fold)),)

    # A window leaving the input (ceil mode) makes invalid im2col entries.
    ifmap_operand = functools.partial(_operand, listing=listed, complete=g.windows_inside)
    filter_operand = functools.partial(_operand, listing=listed)

    if dataflow == "ws":
        # Array rows hold K, columns N; M pixels stream through the stationary filters.
        ifmap = ifmap_operand(
            lambda: ifmap_matrix(g), (m, k), _Prefetch(rows, skewed=True), not overlapping,
            lambda: (_repeated(_skewed_segments(m, k, rows, np.arange(row_folds),
                                                fold_starts, rows),
                               col_folds, every_row_fold),),
            skewed_listed(rows))
        filt = filter_operand(
            lambda: filter_matrix(g), (k, n), _Prefetch(cols, skewed=False), True,
            lambda: (_flipped_segments(k, n, rows, cols, per_fold),), flipped_listed)
        for folds, used_c in _last_smaller(n, cols, col_folds):
            ofmap[folds] = _band(per_fold, 2 * rows - 1, m, used_c)
    elif dataflow == "os":
        # Array rows hold M, columns N; K streams.
        ifmap = ifmap_operand(
            lambda: ifmap_matrix(g, transposed=True), (k, m), _Prefetch(rows, skewed=True),
            not overlapping,
            lambda: (_repeated(_skewed_segments(k, m, rows, np.arange(row_folds),
                                                fold_starts, 0),
                               col_folds, every_row_fold),),
            skewed_listed(0))
        filt = filter_operand(
            lambda: filter_matrix(g), (k, n), _Prefetch(cols, skewed=True), True,
            lambda: tuple(
                _repeated(block, row_folds, per_fold) for block in _per_block(
                    _skewed_segments(k, n, cols, np.arange(col_folds),
                                     np.arange(col_folds) * every_row_fold, 0),
                    np.arange(1, col_folds) * every_row_fold)),
            lambda ranks: tuple(
                _repeated(DemandStream.of_requests(*_skewed(
                    _folds(ranks, cols)[fc:fc + 1], fc * every_row_fold, 0)), row_folds, per_fold)
                for fc in range(col_folds)))
        for c_folds, used_c in _last_smaller(n, cols, col_folds):
            for r_folds, used_r in _last_smaller(m, rows, row_folds):
                # Flipped tile: original row r sits at row rows - 1 - r, written at line
                # (k - 1) + (rows - 1 - r) + c.
                ofmap[c_folds, r_folds] = _band(per_fold, k - 1 + rows - used_r, used_r,
                                                used_c)
    else:
        # Array rows hold K, columns M; N filters stream through the stationary inputs.
        ifmap = ifmap_operand(
            lambda: ifmap_matrix(g, transposed=True), (k, m), _Prefetch(cols, skewed=False),
            not overlapping, lambda: (_flipped_segments(k, m, rows, cols, per_fold),),
            flipped_listed)
        filt = filter_operand(
            lambda: filter_matrix(g).T, (n, k), _Prefetch(rows, skewed=True), True,
            lambda: (_repeated(_skewed_segments(
                n, k, rows, np.arange(row_folds), fold_starts, rows), col_folds,
                every_row_fold),),
            skewed_listed(rows))
        for folds, used_c in _last_smaller(m, cols, col_folds):
            ofmap[folds] = _band(per_fold, 2 * rows - 1, n, used_c)
    return LayerDemand(line_count, ifmap, filt, ofmap.reshape(-1))


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


def _runs(part: DemandStream, per_set: int) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                     np.ndarray]:
    """One pass's requests as *runs* of one own set (``rank // per_set``), from its segments
    without listing requests: a segment's ranks are consecutive, so its set changes at each
    multiple of ``per_set``, and a segment continues the previous run when it starts in the
    set that one ended in.

    Returns:
        ``(first, sets, segment, starts)``: each run's first request (index in the pass), its
        set and the segment holding that request; each segment's first request.
    """
    rank = part.ranks.astype(np.int64)
    length = part.lengths.astype(np.int64)
    starts = np.cumsum(length) - length
    first_set = rank // per_set
    last_set = (rank + length - 1) // per_set
    new = np.ones(rank.size, dtype=bool)
    new[1:] = first_set[1:] != last_set[:-1]
    count = new + (last_set - first_set)
    segment = np.repeat(np.arange(rank.size), count)
    k = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    sets = first_set[segment] + k + ~new[segment]
    first = np.where(sets == first_set[segment], starts[segment],
                     starts[segment] + sets * per_set - rank[segment])
    return first, sets, segment, starts


def read_misses(operand: OperandDemand, buffer_words: int, bandwidth: int) -> ReadMisses:
    """Replay ``read_buffer``'s window over ``operand``'s demand (see the module docstring).

    Args:
        operand: the prefetch stream and the requests.
        buffer_words: the whole (double) buffer, in words.
        bandwidth: words per cycle of this operand's DRAM port.
    """
    active = math.ceil(buffer_words * _ACTIVE_FRACTION)
    prefetch = buffer_words - active
    fetch_rows = -(-operand.fetch_words // bandwidth)
    initial_lines = min(-(-active // bandwidth), fetch_rows)
    refill_lines = -(-prefetch // bandwidth)
    per_set = -(-buffer_words // _SETS_PER_BUFFER)
    n_sets = operand.valid_words // per_set + 1
    window = min(-(-active // per_set), n_sets)
    step = min(-(-prefetch // per_set), n_sets - window)
    empty = np.zeros(0, dtype=np.int64)
    parts = tuple(part for part in operand.parts if part.lengths.size and part.times)
    if step == 0 or not parts:
        return ReadMisses(empty, empty, empty, refill_lines + _READ_LATENCY, initial_lines,
                          initial_lines * bandwidth)

    # A request hits when a copy of its address is in a set of the window.  Its own copy's
    # set is its rank // the set size; requests come in runs with one own set, and while that
    # set is inside the window the whole run hits.  When it is outside, a distinct address
    # misses at once; an address fetched several times (im2col inputs) may still hit through
    # another copy, so the run's requests are looked up one by one in a table of the
    # addresses the window holds.  The table is rewritten when a lookup first needs it at the
    # window's position (the window moves past its whole width at nearly every refill, so
    # rewriting costs what keeping copy counts up to date would).
    valid = None
    if not operand.distinct:
        valid = operand.valid_addresses()

    def sets_slices(first: int, count: int) -> list[slice]:
        """The ranks in sets ``first .. first + count - 1`` (cyclic)."""
        first %= n_sets
        return [slice(a * per_set, min(b * per_set, operand.valid_words))
                for a, b in ((first, min(first + count, n_sets)), (0, first + count - n_sets))
                if b > a]

    # Whether each address has a copy in the window, for the window start ``counted[0]``;
    # only the span ``counted[1:]`` of its addresses is ever set.
    table = None if valid is None else np.zeros(int(valid.max()) + 1, dtype=bool)
    counted = [-1, 0, 0]

    def held(addresses: np.ndarray, start: int) -> np.ndarray:
        """Whether the window starting at set ``start`` holds a copy of each address."""
        if counted[0] != start:
            # intp indices: numpy scatters them several times faster than int32 ones.
            words = np.concatenate([valid[part] for part in sets_slices(start, window)],
                                   dtype=np.intp)
            table[counted[1]:counted[2]] = False
            table[words] = True
            counted[:] = start, int(words.min()), int(words.max()) + 1
        return table[addresses]

    def inside(sets: np.ndarray, start: int) -> np.ndarray:
        """Whether the window starting at set ``start`` holds ``sets``: set ``s`` is inside
        when ``(s - start) mod n < A``; with ``d = s - start`` in ``(-n, n)`` that is
        ``0 <= d < A`` or ``d < A - n`` (no modulo)."""
        d = sets - start
        return (d < window - n_sets) | ((d >= 0) & (d < window))

    def jumps_to_set(own: int, start: int) -> int:
        """The fewest jumps (of ``P`` sets) after which the window holds set ``own``."""
        for k in range(1, n_sets + 1):
            if (own - start - k * step) % n_sets < window:
                return k
        raise AssertionError("window never reaches a prefetched address")

    def jumps_to_address(address: int, own: int, start: int) -> int:
        """The fewest jumps after which the window holds some copy of ``address`` (its own
        copy in set ``own`` at the latest): nearly always one or two."""
        bound = jumps_to_set(own, start)
        for k in range(1, bound):
            if any((valid[part] == address).any()
                   for part in sets_slices(start + k * step, window)):
                return k
        return bound

    miss_lines: list[int] = []
    miss_jumps: list[int] = []
    start = 0
    for part in parts:
        run_first, run_set, run_segment, seg_starts = _runs(part, per_set)
        run_end = np.append(run_first[1:], int(part.lengths.sum()))
        runs = run_first.size
        chunk = 64
        # A pass's misses depend only on where the window starts it (the copies it holds
        # follow from that), so a pass that starts where an earlier one did repeats it.
        passes: dict[int, tuple[list[int], list[int], int]] = {}
        for repetition in range(part.times):
            shift = repetition * part.span
            if start in passes:
                lines, jumps, end = passes[start]
                miss_lines.extend(line + shift for line in lines)
                miss_jumps.extend(jumps)
                start = end
                continue
            begin, first_miss = start, len(miss_lines)
            j = resume = 0
            batch = 1
            while j < runs:
                # The next run whose own set is outside the window (searched in chunks
                # that grow while they find none).
                outside = np.flatnonzero(~inside(run_set[j:j + chunk], start))
                if not outside.size:
                    j += chunk
                    chunk *= 2
                    continue
                j += int(outside[0])
                chunk = 64
                if valid is None:
                    k = jumps_to_set(int(run_set[j]), start)
                    start = (start + k * step) % n_sets
                    miss_lines.append(int(part.lines[run_segment[j]]) + shift)
                    miss_jumps.append(k)
                    j += 1
                    continue
                # Consecutive runs outside the window, tested at once (nothing changes before
                # a request misses), as many more each time none misses.
                ahead = np.flatnonzero(inside(run_set[j:j + batch], start))
                last = j + (int(ahead[0]) if ahead.size else min(batch, runs - j))
                lo, hi = max(int(run_first[j]), resume), int(run_end[last - 1])
                spanned = np.arange(int(np.searchsorted(seg_starts, lo, side="right")) - 1,
                                    int(np.searchsorted(seg_starts, hi, side="left")))
                counts = (np.minimum(seg_starts[spanned] + part.lengths[spanned], hi)
                          - np.maximum(seg_starts[spanned], lo))
                segment = np.repeat(spanned, counts)
                ranks = part.ranks[segment] + np.arange(lo, hi) - seg_starts[segment]
                hit = held(valid[ranks], start)
                if hit.all():
                    j = last
                    batch = min(2 * batch, 256)
                    continue
                batch = 1
                i = int(np.argmin(hit))
                request = lo + i
                j = int(np.searchsorted(run_first, request, side="right")) - 1
                k = jumps_to_address(int(valid[ranks[i]]), int(run_set[j]), start)
                start = (start + k * step) % n_sets
                miss_lines.append(int(part.lines[segment[i]]) + shift)
                miss_jumps.append(k)
                resume = request + 1  # run j is looked at again from the next request
            passes[begin] = ([line - shift for line in miss_lines[first_miss:]],
                             miss_jumps[first_miss:], start)
    if not miss_lines:
        return ReadMisses(empty, empty, empty, refill_lines + _READ_LATENCY, initial_lines,
                          initial_lines * bandwidth)
    lines = np.asarray(miss_lines, dtype=np.int64)
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
    ifmap = read_misses(demand.ifmap, hw.sram_words("ifmap"), bandwidth)
    filt = read_misses(demand.filter, hw.sram_words("filter"), bandwidth)
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
