"""Closed forms of hw_sim's three engines over a batch of (layer, configuration) pairs.

Each function mirrors one hw_sim engine term by term (:mod:`hw_sim.engines.systolic`,
``block_circulant``, ``one_by_n``): the same mapping (folds, weight tiles, row groups), the
same residency rules, the same chunking of streams into half-buffer steps, and the same
double-buffered memory model (through :mod:`accelerator_model.timeline`).  Inputs are
``[P]`` tensors gathered per pair (:class:`PairView`); outputs are :class:`EngineEstimate`.

Exact (equal to hw_sim's event engine): all action counts and DRAM traffic of the dense and
block-circulant engines, the dense engine's cycles (compute and stalls), and the 1xN engine's
compute cycles when its row groups share one pixel-chunk size.  Approximate: the
block-circulant pipeline after its first :data:`UNROLLED_VECTORS` vectors (steady-state
period from the max-plus cycle means of the back-pressured three-stage pipeline instead of
running the recurrence to the end) and the 1xN memory timeline (row groups taken as alike:
mean column and block counts, and an estimated segment count).

A batch is specialised on what occurs in it: parts of the schedule that no pair has (a partial
block, a multi-chunk fold, a finite DRAM bandwidth) are skipped, so homogeneous batches (one
workload across many configurations) evaluate faster.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from accelerator_model.timeline import (
    Algebra,
    Pattern,
    any_,
    le,
    lt,
    optional,
    pick,
    select,
    step,
)

# Why a pair cannot run (0: it can).  Each names the hw_sim field that is too small or missing.
REASONS = {
    1: ("block_circulant", "a block_circulant engine (the layer is block_circulant)"),
    2: ("one_by_n", "a one_by_n engine (the layer is one_by_n)"),
    7: ("n_m", "true (the layer is n_m)"),
    3: ("block_circulant.fft_points", "at least the layer's block size"),
    4: ("sram_kb.ifmap", "each half holds one tile or one stream unit"),
    5: ("sram_kb.filter", "each half holds one tile or one stream unit"),
    6: ("sram_kb.ofmap", "each half holds one tile or one stream unit"),
}
IFMAP_TOO_SMALL, FILTER_TOO_SMALL, OFMAP_TOO_SMALL = 4, 5, 6
#: Engine code (:data:`accelerator_model.encode.ENGINE_NAMES` index) -> the reason a
#: configuration without that engine gives.
MISSING_ENGINE = {1: 1, 2: 2, 3: 7}


class PairView:
    """Per-pair columns: the :class:`~accelerator_model.encode.LayerBatch` and
    :class:`~accelerator_model.encode.HardwareBatch` fields an engine reads, gathered to
    ``[P]``."""

    def __init__(self, **columns: Tensor) -> None:
        self.__dict__.update(columns)


@dataclass(frozen=True, slots=True)
class EngineEstimate:
    """One engine's estimate for a batch of pairs (``[P]`` float64 tensors).

    ``occupancy_cycles`` and ``compute_occupancy_cycles`` count cycles (hw_sim's
    ``total_cycles`` is one less); counts and DRAM words follow
    :data:`hw_sim.schedule.COUNT_FIELDS` and :class:`hw_sim.schedule.DramTraffic`.
    ``reason`` is 0 for a runnable pair, else a key of :data:`REASONS`; ``need_words`` is the
    half-buffer size (words) the failing check wanted.
    """

    occupancy_cycles: Tensor
    compute_occupancy_cycles: Tensor
    macs: Tensor
    complex_macs: Tensor
    fft_butterflies: Tensor
    index_decodes: Tensor
    ifmap_sram_reads: Tensor
    filter_sram_reads: Tensor
    ofmap_sram_reads: Tensor
    ofmap_sram_writes: Tensor
    ifmap_dram_reads: Tensor
    filter_dram_reads: Tensor
    psum_dram_reads: Tensor
    ofmap_dram_writes: Tensor
    useful_ops: Tensor
    peak_ops_per_cycle: Tensor
    reason: Tensor
    need_words: Tensor


def _cdiv(a: Tensor, b: Tensor | float) -> Tensor:
    return torch.ceil(a / b)


def _fdiv(a: Tensor, b: Tensor | float) -> Tensor:
    return torch.floor(a / b)


def _eq(a: Tensor, b: float) -> Tensor:
    """Float mask of ``a == b`` for integer values."""
    return torch.clamp(1 - torch.abs(a - b), 0, 1)


def _first_failure(checks: list[tuple[Tensor, float, Tensor]], like: Tensor
                   ) -> tuple[Tensor, Tensor]:
    """The first failing check per pair (hw_sim's raise order): ``(reason, need_words)``;
    each check is ``(failed mask, reason code, words wanted)``."""
    reason = torch.zeros_like(like)
    need = torch.zeros_like(like)
    for failed, code, words in reversed(checks):
        reason = reason + failed * (code - reason)
        need = torch.lerp(need, words, failed)
    return reason, need


def _chunked(alg: Algebra, stream: Tensor, chunk: Tensor, pre: Tensor | float,
             drain: Tensor | float, load_unit: Tensor, load_first: Tensor | float,
             store_unit: Tensor | float, store_last: Tensor | float,
             cycles: tuple[Tensor, Tensor] | None = None) -> Pattern:
    """A stream of ``stream`` units cut into chunks of ``chunk`` units (hw_sim's
    ``stream_chunks``: a first chunk, ``k`` identical middle ones and a last one; or one
    chunk), as a pattern built in closed form.

    Step loads are ``load_unit`` per unit (+ ``load_first`` on the first step), stores
    ``store_unit`` per unit (+ ``store_last`` on the last).  Step compute is the step's units
    (+ ``pre`` on the first, + ``drain`` on the last), or ``cycles[0]`` for a full chunk and
    ``cycles[1]`` for the last one when given (``drain`` then belongs to the last chunk's
    figure and ``pre`` must be 0).
    """
    nch = _cdiv(stream, chunk)
    last = stream - (nch - 1) * chunk  # equals stream (and chunk) when nch == 1
    c_chunk, c_last = (chunk, last) if cycles is None else cycles
    load_chunk = load_unit * chunk
    store_chunk = store_unit * chunk
    load_last = load_unit * last
    c_first = c_chunk + pre
    c_end = c_last + drain
    ld_first = load_chunk + load_first
    st_last = store_unit * last + store_last
    if not any_(nch - 1):  # one chunk everywhere: a single step
        return Pattern(nch, c_first + drain, c_end + pre, ld_first, ld_first, st_last, st_last,
                       torch.zeros_like(nch))
    middles = nch - 2
    some_middle = torch.clamp(middles, 0, 1)
    # Middle steps move the next chunk's load and the previous chunk's store.
    ld_second = torch.lerp(load_last, load_chunk, some_middle)
    inner = some_middle * alg._duration(c_chunk, load_last + store_chunk)
    if any_(middles - 1):
        inner = inner + torch.clamp(middles - 1, min=0) * alg._duration(
            c_chunk, load_chunk + store_chunk)
    st_penult = store_chunk
    single = le(nch, 1)
    if any_(single):
        # One chunk: the step is first and last at once.
        c_first = c_first + single * drain
        c_end = c_end + single * pre
        ld_second = ld_second + single * load_first
        st_penult = st_penult + single * store_last
    return Pattern(nch, c_first, c_end, ld_first, ld_second, st_last, st_penult, inner,
                   may_be_single=any_(single), may_be_multi=True)


def _block_sizes(extent: Tensor, size: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """hw_sim's ``blocks``: ``(full_count, rest, has_rest mask, n_blocks)``."""
    full = _fdiv(extent, size)
    rest = extent - full * size
    has_rest = torch.clamp(rest, 0, 1)
    return full, rest, has_rest, full + has_rest


def _layer_occupancy(alg: Algebra, group: Pattern, first_load: Tensor, groups: Tensor,
                     layer_first_load: Tensor | None = None) -> Tensor:
    """Occupancy of ``groups`` copies of ``group``, each loading ``first_load`` more before its
    first step, the first also ``layer_first_load``."""
    group = alg.add_first_load(group, first_load)
    if any_(groups - 1):
        group = alg.repeat(group, groups, may_be_zero=False)
    if layer_first_load is not None:
        group = alg.add_first_load(group, layer_first_load)
    return alg.occupancy(group)


# ------------------------------------------------------------------------------------------
# Dense layers on the systolic array


def systolic(p: PairView, on_chip: Tensor, dataflow: str, n_m: bool = False) -> EngineEstimate:
    """hw_sim's :class:`~hw_sim.engines.systolic.SystolicEngine` for pairs that all have
    ``dataflow`` ("ws", "is" or "os"); ``on_chip``: float mask of weights already on chip.
    With ``n_m``, hw_sim's :class:`~hw_sim.engines.n_m.NMEngine`: the layer's ``k`` is
    already the kept rows, and its index metadata loads with the first weights."""
    metadata = p.metadata_words * (1 - on_chip) if n_m else None
    sr, sc = p.rows, p.cols
    m, n, k = p.m, p.n, p.k
    ws, os = dataflow == "ws", dataflow == "os"
    row_dim, col_dim, stream = {"ws": (k, n, m), "is": (k, m, n), "os": (m, n, k)}[dataflow]
    ifmap_res = le(p.ifmap_gw, p.ifmap_words)
    filter_res = on_chip if ws else torch.maximum(le(n * k, p.filter_words), on_chip)
    hi, hf, ho = _fdiv(p.ifmap_words, 2), _fdiv(p.filter_words, 2), _fdiv(p.ofmap_words, 2)

    # Outer blocks: array columns (ws/is) or rows (os); inner blocks the other side.
    outer_dim, outer_arr = (row_dim, sr) if os else (col_dim, sc)
    inner_dim, inner_arr = (col_dim, sc) if os else (row_dim, sr)
    out_full, out_rest, has_out_rest, n_outer = _block_sizes(outer_dim, outer_arr)
    _, in_rest, has_in_rest, n_inner = _block_sizes(inner_dim, inner_arr)
    in_last = torch.lerp(inner_arr, in_rest, has_in_rest)
    pre = 0.0 if os else sr
    drain = sr + sc - 2
    g = p.groups
    compute = g * n_outer * n_inner * (stream + pre + drain)

    if ws:
        streamed_res, stationary_res, half_str, half_stat = ifmap_res, filter_res, hi, hf
    else:
        streamed_res, stationary_res, half_str, half_stat = filter_res, ifmap_res, hf, hi

    occupancy = compute
    if any_(torch.isfinite(p.bandwidth).to(m.dtype)):
        alg = Algebra(p.bandwidth)

        def fold(outer_size: Tensor, inner_size: Tensor, inner_first: bool,
                 final: bool | Tensor) -> Pattern:
            r, c = (outer_size, inner_size) if os else (inner_size, outer_size)
            r1, c1 = torch.clamp(r, min=1), torch.clamp(c, min=1)  # absent blocks: no 0 / 0
            if os:
                limit = torch.minimum(pick(ifmap_res, stream, _fdiv(hi, r1)),
                                      pick(filter_res, stream, _fdiv(hf, c1)))
                skip_ifmap = ifmap_res if inner_first else torch.maximum(
                    ifmap_res, le(r * stream, hi))
                load_unit = (1 - skip_ifmap) * r + (1 - filter_res) * c
                load_first, store_unit, store_last = 0.0, 0.0, r * c
            else:
                psums_stay = le(stream * c, ho)
                limit = torch.minimum(pick(streamed_res, stream, _fdiv(half_str, r1)),
                                      pick(psums_stay, stream, _fdiv(ho, c1)))
                load_unit = (1 - streamed_res) * r
                if not inner_first:
                    load_unit = load_unit + (1 - psums_stay) * c
                load_first = (1 - stationary_res) * r * c
                if final is True:
                    store_unit = c
                elif final is False:
                    store_unit = c * (1 - psums_stay)
                else:
                    store_unit = c * torch.maximum(final, 1 - psums_stay)
                store_last = 0.0
            chunk = torch.clamp(torch.minimum(stream, limit), min=1)
            return _chunked(alg, stream, chunk, pre, drain, load_unit, load_first, store_unit,
                            store_last)

        def outer_block(outer_size: Tensor) -> Pattern:
            one_inner = le(n_inner, 1)
            if not any_(1 - one_inner):
                return fold(outer_size, in_last, True, True)
            first = fold(outer_size, torch.lerp(inner_arr, in_last, one_inner), True, one_inner)
            middle = fold(outer_size, inner_arr, False, False) if any_(le(3, n_inner)) else None
            last = fold(outer_size, in_last, False, True)
            out = first
            if middle is not None:
                count = torch.clamp(n_inner - 2, min=0)
                out = alg.concat(out, alg.repeat(middle, count, may_be_zero=any_(le(count, 0))))
            return alg.concat(out, optional(last, 1 - one_inner) if any_(one_inner) else last)

        group = outer_block(outer_arr)
        if any_(torch.abs(out_full - 1)):
            group = alg.repeat(group, out_full, may_be_zero=any_(le(out_full, 0)))
        if any_(has_out_rest):
            rest = outer_block(out_rest)
            all_rest = not any_(1 - has_out_rest)
            group = alg.concat(group, rest if all_rest else optional(rest, has_out_rest))
        first_load = ifmap_res * p.ifmap_gw + filter_res * (1 - on_chip) * n * k
        occupancy = _layer_occupancy(alg, group, first_load, g, metadata)

    # Action counts and DRAM words: closed forms of summing hw_sim's step costs and loads.
    n_col_blocks = _cdiv(col_dim, sc)
    macs = m * n * k
    zero = torch.zeros_like(m)
    if os:
        if_sram, f_sram = m * k * n_col_blocks, n * k * n_outer
        of_reads, of_writes = zero, m * n
    else:
        if_sram = k * m * n_col_blocks if ws else k * m
        f_sram = k * n if ws else k * n * n_col_blocks
        of_reads, of_writes = m * n * (n_inner - 1), m * n * n_inner

    def outer_sum(fn):  # one outer block's quantity, summed over the outer blocks
        return fn(outer_arr) * out_full + has_out_rest * fn(out_rest)

    if os:
        tiles = outer_sum(lambda r: r * k * torch.lerp(n_inner, torch.ones_like(m),
                                                         le(r * k, hi)))
        if_dram = torch.lerp(tiles, p.ifmap_gw, ifmap_res)
        f_dram = torch.lerp(n * k * n_outer, (1 - on_chip) * n * k, filter_res)
        psum_dram, of_dram = zero, m * n
    else:
        if_dram = torch.lerp(if_sram, p.ifmap_gw, ifmap_res)
        f_dram = torch.lerp(f_sram, (1 - on_chip) * n * k, filter_res)
        psum_dram = outer_sum(lambda c: (1 - le(stream * c, ho)) * c * stream * (n_inner - 1))
        of_dram = outer_sum(lambda c: c * stream * torch.lerp(n_inner, torch.ones_like(m),
                                                                le(stream * c, ho)))

    r_max = torch.minimum(sr, row_dim)
    c_max = torch.minimum(sc, col_dim)
    tile = r_max * c_max
    if os:
        checks = [(lt(ho, tile), OFMAP_TOO_SMALL, tile),
                  ((1 - ifmap_res) * lt(hi, r_max), IFMAP_TOO_SMALL, r_max),
                  ((1 - filter_res) * lt(hf, c_max), FILTER_TOO_SMALL, c_max)]
    else:
        checks = [((1 - stationary_res) * lt(half_stat, tile),
                   FILTER_TOO_SMALL if ws else IFMAP_TOO_SMALL, tile),
                  ((1 - streamed_res) * lt(half_str, r_max),
                   IFMAP_TOO_SMALL if ws else FILTER_TOO_SMALL, r_max),
                  (lt(ho, stream * c_max) * lt(ho, c_max), OFMAP_TOO_SMALL, c_max)]
    reason, need = _first_failure(checks, m)
    return EngineEstimate(
        occupancy_cycles=occupancy, compute_occupancy_cycles=compute,
        macs=macs * g, complex_macs=zero, fft_butterflies=zero, index_decodes=zero,
        ifmap_sram_reads=if_sram * g, filter_sram_reads=f_sram * g,
        ofmap_sram_reads=of_reads * g, ofmap_sram_writes=of_writes * g,
        ifmap_dram_reads=if_dram * g,
        filter_dram_reads=f_dram * g + (metadata if metadata is not None else 0),
        psum_dram_reads=psum_dram * g, ofmap_dram_writes=of_dram * g,
        useful_ops=macs * g, peak_ops_per_cycle=sr * sc, reason=reason, need_words=need,
    )


# ------------------------------------------------------------------------------------------
# Block-circulant layers on the FFT engine

UNROLLED_VECTORS = 6


class Pipeline:
    """hw_sim's back-pressured three-stage pipeline for one stage timing per pair.

    The start-time recurrence of :func:`hw_sim.engines.block_circulant.pipeline_cycles` runs
    exactly for the first :data:`UNROLLED_VECTORS` vectors (the transient, while the
    back-pressure of the ``buffer_depth``-deep stage buffers sets in); every later vector adds
    the steady-state period, the largest cycle mean of the recurrence's max-plus graph: a
    stage's own occupancy, or a stage's latency plus the next stage's occupancy shared by the
    vectors its output buffer holds.
    """

    def __init__(self, occupancy: tuple[Tensor, Tensor, Tensor],
                 latency: tuple[Tensor, Tensor, Tensor], buffer_depth: Tensor) -> None:
        o, lat, c = occupancy, latency, buffer_depth
        depth_is = [_eq(c, float(back)) for back in range(1, UNROLLED_VECTORS)]
        starts: list[list[Tensor]] = []
        for j in range(UNROLLED_VECTORS):
            row: list[Tensor] = []
            for k in range(3):
                t = starts[j - 1][k] + o[k] if j > 0 else torch.zeros_like(o[0])
                if k > 0:
                    t = torch.maximum(t, row[k - 1] + lat[k - 1])
                if k < 2:
                    for back in range(1, j + 1):  # a slot frees when vector j-c leaves stage k+1
                        freed = torch.maximum(t, starts[j - back][k + 1] + o[k + 1])
                        t = torch.lerp(t, freed, depth_is[back - 1])
                row.append(t)
            starts.append(row)
        self.last_stage_starts = [row[2] for row in starts]
        self.drain = lat[2]
        self.period = torch.maximum(torch.maximum(o[0], o[1]), torch.maximum(
            o[2], torch.maximum((lat[0] + o[1]) / c, (lat[1] + o[2]) / c)))

    def cycles(self, vectors: Tensor) -> Tensor:
        """Cycles for ``vectors`` (>= 1) vectors."""
        start = self.last_stage_starts[-1] + (vectors - UNROLLED_VECTORS) * self.period
        start = torch.lerp(start, self.last_stage_starts[-1], le(vectors, UNROLLED_VECTORS))
        for j in range(UNROLLED_VECTORS - 1):
            start = torch.lerp(start, self.last_stage_starts[j], _eq(vectors, j + 1.0))
        return start + self.drain


def block_circulant(p: PairView, on_chip: Tensor) -> EngineEstimate:
    """hw_sim's :class:`~hw_sim.engines.block_circulant.BlockCirculantEngineModel`;
    ``on_chip``: float mask of weights already on chip."""
    m, b, g = p.m, p.block, p.groups
    zero = torch.zeros_like(m)
    pb = _fdiv(p.n, b)
    qb = _fdiv(p.k, b)
    vector_words = qb * b
    spectra = pb * qb * b
    ifmap_res = le(p.ifmap_gw, p.ifmap_words)
    w_res = torch.maximum(on_chip, le(spectra, p.filter_words))
    hi, hf, ho = _fdiv(p.ifmap_words, 2), _fdiv(p.filter_words, 2), _fdiv(p.ofmap_words, 2)
    p_tile = torch.lerp(_fdiv(hf, qb * b), pb, w_res)
    pt = torch.clamp(torch.minimum(p_tile, pb), min=1)
    chunk = torch.clamp(torch.minimum(torch.minimum(m, _fdiv(ho, pt * b)),
                                      pick(ifmap_res, m, _fdiv(hi, vector_words))), min=1)
    nch = _cdiv(m, chunk)
    last = m - (nch - 1) * chunk

    bins = _fdiv(b, 2) + 1
    depth = p.bc_depth
    o1 = _cdiv(qb, p.bc_fft_units)
    full_tiles, rest, has_rest, n_tiles = _block_sizes(pb, pt)
    load_unit = (1 - ifmap_res) * vector_words
    finite = any_(torch.isfinite(p.bandwidth).to(m.dtype))
    alg = Algebra(p.bandwidth)

    def tile(rows: Tensor) -> tuple[Tensor, Pattern | None]:
        """Compute cycles and schedule of one weight tile of ``rows`` block rows."""
        o2 = _cdiv(bins * rows * qb, p.bc_lanes)
        o3 = _cdiv(rows, p.bc_ifft_units)
        pipe = Pipeline((o1, o2, o3), (o1 - 1 + depth, o2, o3 - 1 + depth), p.bc_buffer)
        cycles = (pipe.cycles(chunk), pipe.cycles(last))
        compute = (nch - 1) * cycles[0] + cycles[1]
        if not finite:
            return compute, None
        weights = (1 - w_res) * rows * qb * b
        return compute, _chunked(alg, m, chunk, 0.0, 0.0, load_unit, weights, rows * b, 0.0,
                                 cycles=cycles)

    compute_full, pattern = tile(pt)
    compute = full_tiles * compute_full
    any_rest = any_(has_rest)
    if any_rest:
        compute_rest, pattern_rest = tile(torch.clamp(rest, min=1))
        compute = compute + has_rest * compute_rest
    compute = compute * g
    occupancy = compute
    if finite:
        assert pattern is not None
        if any_(torch.abs(full_tiles - 1)):
            pattern = alg.repeat(pattern, full_tiles, may_be_zero=any_(le(full_tiles, 0)))
        if any_rest:
            assert pattern_rest is not None
            all_rest = not any_(1 - has_rest)
            pattern = alg.concat(pattern, pattern_rest if all_rest
                                 else optional(pattern_rest, has_rest))
        first_load = ifmap_res * p.ifmap_gw + w_res * (1 - on_chip) * spectra
        occupancy = _layer_occupancy(alg, pattern, first_load, g)

    per_fft = p.butterflies_per_fft
    cmacs = m * bins * pb * qb
    checks = [
        (lt(p.bc_fft_points, b), 3.0, b),
        ((1 - w_res) * lt(p_tile, 1), FILTER_TOO_SMALL, qb * b),
        (lt(_fdiv(ho, pt * b), 1), OFMAP_TOO_SMALL, pt * b),
        ((1 - ifmap_res) * lt(_fdiv(hi, vector_words), 1), IFMAP_TOO_SMALL, vector_words),
    ]
    reason, need = _first_failure(checks, m)
    return EngineEstimate(
        occupancy_cycles=occupancy, compute_occupancy_cycles=compute,
        macs=zero, complex_macs=cmacs * g,
        fft_butterflies=m * (qb * n_tiles + pb) * per_fft * g, index_decodes=zero,
        ifmap_sram_reads=m * qb * b * n_tiles * g, filter_sram_reads=m * pb * qb * b * g,
        ofmap_sram_reads=zero, ofmap_sram_writes=m * pb * b * g,
        ifmap_dram_reads=torch.lerp(m * vector_words * n_tiles, p.ifmap_gw, ifmap_res) * g,
        filter_dram_reads=(1 - on_chip) * spectra * g,
        psum_dram_reads=zero, ofmap_dram_writes=m * pb * b * g,
        useful_ops=cmacs * g, peak_ops_per_cycle=p.bc_lanes, reason=reason, need_words=need,
    )


# ------------------------------------------------------------------------------------------
# 1xN block-sparse layers on the vector engine


def one_by_n(p: PairView, on_chip: Tensor) -> EngineEstimate:
    """hw_sim's :class:`~hw_sim.engines.one_by_n.OneByNEngineModel`; ``on_chip``: float mask
    of weights already on chip.

    Reads the layer's row-group statistics for the pair's ``vector_lanes`` (``p.rg_*``,
    gathered by the caller).
    """
    m, nb, taps, g = p.m, p.nb, p.taps, p.groups
    zero = torch.zeros_like(m)
    one = torch.ones_like(m)
    v = p.nx_lanes
    n_rg_group = _cdiv(p.block_rows, v)
    n_rg = n_rg_group * g
    rows_rg = torch.minimum(v, p.block_rows)
    block_words = nb * taps + 1
    hi, hf, ho = _fdiv(p.ifmap_words, 2), _fdiv(p.filter_words, 2), _fdiv(p.ofmap_words, 2)
    ifmap_res = le(p.ifmap_gw, p.ifmap_words)
    layer_weight_words = p.blocks * block_words
    w_res = torch.maximum(on_chip, le(layer_weight_words, p.filter_words))

    cols = p.rg_cols
    chunk = torch.minimum(torch.minimum(m, p.nx_acc_depth), _fdiv(ho, rows_rg * nb))
    ifmap_limit = _fdiv(hi, torch.clamp(taps * cols, min=1))
    no_limit = torch.maximum(ifmap_res, le(cols, 0))
    chunk = torch.clamp(torch.lerp(torch.minimum(chunk, ifmap_limit), chunk, no_limit), min=1)
    nch = _cdiv(m, chunk)
    last = m - (nch - 1) * chunk
    lanes_per_tap = _cdiv(nb, p.nx_width)
    # The slowest row of a row group sets its pace; cutting rows into segments does not
    # change the sum over them.
    compute = p.rg_bmax * (p.nx_decode * nch + taps * m * lanes_per_tap) + n_rg * nch

    blocks_rg = p.blocks / n_rg
    bmax_rg = p.rg_bmax / n_rg
    # Segments: the fewest S with sum_r ceil(b_r / S) <= cap (blocks half the filter buffer
    # holds), taking the rows alike, between the bounds B / cap and b_max / floor(cap / rows).
    cap = torch.clamp(_fdiv(hf, block_words), min=1)
    nonempty = torch.clamp(p.rg_nonempty, min=1)
    per_row = torch.clamp(_fdiv(cap, nonempty), min=1)
    estimate = torch.minimum(torch.maximum(_cdiv(blocks_rg / nonempty, per_row),
                                           _cdiv(blocks_rg, cap)), _cdiv(bmax_rg, per_row))
    fits = torch.maximum(w_res, le(blocks_rg * block_words, hf))
    segments = torch.lerp(torch.clamp(estimate, min=1), one, fits)
    multi_segment = torch.clamp(segments - 1, 0, 1)

    occupancy = compute
    head = ifmap_res * p.ifmap_gw
    preload = w_res * (1 - on_chip) * layer_weight_words
    if any_(torch.isfinite(p.bandwidth).to(m.dtype)):
        alg = Algebra(p.bandwidth)
        some_multi_segment = any_(multi_segment)

        def chunk_pattern(pixels: Tensor, first: bool) -> Pattern:
            fetch = (1 - w_res) * (1.0 if first else multi_segment)
            seg_compute = bmax_rg * (p.nx_decode + taps * pixels * lanes_per_tap) / segments
            seg_load = ((1 - ifmap_res) * pixels * taps * cols
                        + fetch * blocks_rg * block_words / segments)
            tail = step(seg_compute + 1, seg_load, pixels * rows_rg * nb)
            if not some_multi_segment:
                return tail
            body = alg.steps(seg_compute, seg_load, zero, segments - 1,
                             may_be_multi=any_(le(3, segments)))
            return alg.concat(body, tail)

        is_single = le(nch, 1)
        row_group = chunk_pattern(m, True)
        if any_(1 - is_single):
            count = torch.clamp(nch - 2, min=0)
            middle = alg.repeat(chunk_pattern(chunk, False), count,
                                may_be_zero=any_(le(count, 0)))
            multi = alg.concat(alg.concat(chunk_pattern(chunk, True), middle),
                               chunk_pattern(last, False))
            row_group = select(is_single, row_group, multi) if any_(is_single) else multi
        group = row_group
        if any_(n_rg_group - 1):
            group = alg.repeat(row_group, n_rg_group, may_be_zero=False)
        layer = alg.add_first_load(group, head + preload)
        if any_(g - 1):
            others = alg.repeat(alg.add_first_load(group, head), g - 1,
                                may_be_zero=any_(le(g, 1)))
            layer = alg.concat(layer, others)
        occupancy = alg.occupancy(layer)

    macs = p.blocks * taps * m * nb
    if_dram = torch.lerp(taps * m * cols * segments * n_rg, p.ifmap_gw * g, ifmap_res)
    f_dram = torch.lerp((1 + multi_segment * (nch - 1)) * layer_weight_words, preload, w_res)
    checks = [
        ((1 - w_res) * lt(hf, block_words), FILTER_TOO_SMALL, block_words),
        ((1 - w_res) * lt(hf, p.rg_nonempty_max * block_words), FILTER_TOO_SMALL,
         p.rg_nonempty_max * block_words),
        (lt(_fdiv(ho, rows_rg * nb), 1), OFMAP_TOO_SMALL, rows_rg * nb),
        ((1 - ifmap_res) * lt(0, p.rg_cols_max)
         * lt(_fdiv(hi, torch.clamp(taps * p.rg_cols_max, min=1)), 1),
         IFMAP_TOO_SMALL, taps * p.rg_cols_max),
    ]
    reason, need = _first_failure(checks, m)
    return EngineEstimate(
        occupancy_cycles=occupancy, compute_occupancy_cycles=compute,
        macs=macs, complex_macs=zero, fft_butterflies=zero,
        index_decodes=p.blocks * nch, ifmap_sram_reads=p.blocks * taps * m,
        filter_sram_reads=p.blocks * (taps * nb + 1) * nch,
        ofmap_sram_reads=zero, ofmap_sram_writes=p.n * m * g,
        ifmap_dram_reads=if_dram, filter_dram_reads=f_dram, psum_dram_reads=zero,
        ofmap_dram_writes=p.n * m * g,
        useful_ops=macs, peak_ops_per_cycle=v * p.nx_width, reason=reason, need_words=need,
    )
