"""Block-circulant layers on an FFT engine (CirCNN / GST dataflow).

A layer's ``N x K`` weight (per group; ``K = taps * C / groups``) is a ``p x q`` grid of
``b x b`` circulant blocks, each defined by one length-``b`` vector.  For one input vector
``x`` (an im2col row: one output pixel):

    y_i = IFFT( sum_j  W_ij  o  FFT(x_j) ),   W_ij = FFT(w_ij), precomputed

so the engine runs a three-stage pipeline per input vector:

1. ``q`` input FFTs on ``fft_units`` pipelined units (each starts one FFT a cycle; result after
   ``fft_pipeline_depth`` cycles): occupancy ``o1 = ceil(q / fft_units)``, latency
   ``l1 = o1 - 1 + depth``;
2. ``(b/2 + 1) * p * q`` complex multiply-accumulates on ``complex_mac_lanes`` lanes (real
   input: only ``b/2 + 1`` frequency bins are independent): ``o2 = l2 = ceil(bins*p*q/lanes)``;
3. ``p`` output IFFTs on ``ifft_units`` units: ``o3 = ceil(p / ifft_units)``, ``l3 = o3 - 1 +
   depth``.

Vectors flow through the stages in order.  Between stages a buffer holds
``stage_buffer_depth`` vectors; a stage stalls (back-pressure) until a slot frees, which is
when the next stage has finished reading a vector.  With ``S[j][k]`` the cycle stage ``k``
starts vector ``j``::

    S[j][k] = max(S[j-1][k] + o_k,            # the stage is free
                  S[j][k-1] + l_{k-1},        # its input is ready
                  S[j-c][k+1] + o_{k+1})      # a slot in its output buffer is free

and a step of ``n`` vectors takes ``S[n-1][3] + l3`` cycles.  The closed form below detects
when the recurrence has become periodic (it is homogeneous, so once the state advances by a
constant it does so forever) and extrapolates; the reference stepper runs it cycle by cycle.

Memory: weight spectra take ``p * q * b`` words (Hermitian-packed).  They are resident when
they fit the whole filter buffer; otherwise block rows are processed ``p_t`` at a time, each
tile fetched into half the buffer.  Input vectors are resident when the distinct input fits the
ifmap buffer, else each step fetches its im2col vectors.  Outputs are written back per step.
Input FFTs are recomputed for each weight tile (and for every window of a convolution: no
FFT reuse across overlapping windows).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from a3cs_common.errors import ConfigError
from hw_sim.engines.base import LayerT, stream_chunks, too_small
from hw_sim.hardware import BlockCirculantEngine, Hardware
from hw_sim.schedule import OpCounts, StepRun, coalesce
from hw_sim.workload import BlockCirculant

STAGES = 3


@dataclass(frozen=True, slots=True)
class CirculantWork:
    """One step: ``vectors`` input vectors through the pipeline against ``p_blocks`` block
    rows of weight spectra, each ``q_blocks`` blocks of size ``block_size`` wide."""

    vectors: int
    p_blocks: int
    q_blocks: int
    block_size: int


def butterflies_per_fft(b: int) -> int:
    """Radix-2 butterflies of one ``b``-point FFT: ``(b / 2) * log2(b)``."""
    return (b // 2) * (b.bit_length() - 1)


def stage_times(work: CirculantWork, engine: BlockCirculantEngine) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(occupancy, latency)`` of the three stages for one vector, in cycles."""
    bins = work.block_size // 2 + 1
    o_fft = -(-work.q_blocks // engine.fft_units)
    o_mac = -(-(bins * work.p_blocks * work.q_blocks) // engine.complex_mac_lanes)
    o_ifft = -(-work.p_blocks // engine.ifft_units)
    depth = engine.fft_pipeline_depth
    return (o_fft, o_mac, o_ifft), (o_fft - 1 + depth, o_mac, o_ifft - 1 + depth)


def pipeline_cycles(vectors: int, occupancy: tuple[int, ...], latency: tuple[int, ...],
                    buffer_depth: int) -> int:
    """Cycles for ``vectors`` vectors through the back-pressured pipeline (closed form).

    Runs the start-time recurrence until the per-vector advance of the whole state is a
    constant (then it stays so: the recurrence is homogeneous in max-plus algebra) and
    extrapolates; otherwise runs it to the end.
    """
    c = buffer_depth
    starts: list[tuple[int, ...]] = []
    previous_delta: tuple[int, ...] | None = None
    steady_for = 0
    for j in range(vectors):
        row = []
        for k in range(STAGES):
            t = 0
            if j > 0:
                t = starts[j - 1][k] + occupancy[k]
            if k > 0:
                t = max(t, row[k - 1] + latency[k - 1])
            if k < STAGES - 1 and j >= c:
                t = max(t, starts[j - c][k + 1] + occupancy[k + 1])
            row.append(t)
        starts.append(tuple(row))
        if j >= 1:
            delta = tuple(a - b for a, b in zip(starts[j], starts[j - 1], strict=True))
            constant = len(set(delta)) == 1
            steady_for = steady_for + 1 if constant and delta == previous_delta else 0
            previous_delta = delta
            # The state is the last c vectors' start times; once it advanced by the same
            # constant c+1 times in a row, every later vector advances by it too.
            if steady_for >= c + 1:
                step = delta[0]
                last_start = starts[j][STAGES - 1] + (vectors - 1 - j) * step
                return last_start + latency[STAGES - 1]
    return starts[-1][STAGES - 1] + latency[STAGES - 1]


class BlockCirculantEngineModel:
    """Block-circulant layers on the FFT engine."""

    name = "block_circulant"

    def plan(self, layer: LayerT, hw: Hardware, weights_on_chip: bool = False) -> list[StepRun]:
        fmt = layer.weight_format
        assert isinstance(fmt, BlockCirculant)
        engine = hw.block_circulant
        assert engine is not None
        b = fmt.block_size
        if b > engine.fft_points:
            raise ConfigError(
                "block_circulant.fft_points", engine.fft_points,
                f">= the block size {b} of layer '{layer.name}'",
            )
        p = layer.gemm_n // b
        q = layer.gemm_k // b
        vector_words = q * b
        spectra_words = p * q * b
        ifmap_group_words = layer.ifmap_words // layer.groups
        ifmap_resident = ifmap_group_words <= hw.sram_words("ifmap")
        weights_resident = weights_on_chip or spectra_words <= hw.sram_words("filter")
        half = {op: hw.sram_half_words(op) for op in ("ifmap", "filter", "ofmap")}
        if weights_resident:
            p_tile = p
        else:
            p_tile = half["filter"] // (q * b)
            if p_tile < 1:
                raise too_small("filter", hw, q * b, "one block row of weight spectra")
        limits = {"ofmap": half["ofmap"] // (min(p_tile, p) * b)}
        if not ifmap_resident:
            limits["ifmap"] = half["ifmap"] // vector_words
        for operand, most in limits.items():
            if most < 1:
                need = vector_words if operand == "ifmap" else min(p_tile, p) * b
                raise too_small(operand, hw, need, "one vector")
        chunk = min(layer.gemm_m, *limits.values())

        group: list[StepRun] = []
        full_tiles, rest = divmod(p, p_tile)
        tiles = [(p_tile, full_tiles)] if full_tiles else []
        if rest:
            tiles.append((rest, 1))
        for tile_rows, tile_count in tiles:
            sequence = []
            for size, count, is_first, _ in stream_chunks(layer.gemm_m, chunk):
                work = CirculantWork(size, tile_rows, q, b)
                weight_load = tile_rows * q * b if (is_first and not weights_resident) else 0
                ifmap_load = 0 if ifmap_resident else size * vector_words
                sequence.append(StepRun(work, ifmap_load, weight_load, 0, size * tile_rows * b, count))
            group.extend(sequence * tile_count)
        group = coalesce(group)
        head = group[0]
        extra_ifmap = ifmap_group_words if ifmap_resident else 0
        extra_filter = spectra_words if weights_resident and not weights_on_chip else 0
        group[0] = StepRun(head.work, head.ifmap_load_words + extra_ifmap,
                           head.filter_load_words + extra_filter, 0, head.store_words, 1)
        if head.repeat > 1:
            group.insert(1, StepRun(head.work, head.ifmap_load_words, head.filter_load_words, 0,
                                    head.store_words, head.repeat - 1))
        return coalesce(group * layer.groups)

    def step_cost(self, work: CirculantWork, hw: Hardware) -> tuple[int, OpCounts]:
        engine = hw.block_circulant
        assert engine is not None
        occupancy, latency = stage_times(work, engine)
        cycles = pipeline_cycles(work.vectors, occupancy, latency, engine.stage_buffer_depth)
        n, p, q, b = work.vectors, work.p_blocks, work.q_blocks, work.block_size
        return cycles, OpCounts(
            complex_macs=n * (b // 2 + 1) * p * q,
            fft_butterflies=n * (q + p) * butterflies_per_fft(b),
            ifmap_sram_reads=n * q * b,
            filter_sram_reads=n * p * q * b,
            ofmap_sram_writes=n * p * b,
        )

    def cycle_activity(self, work: CirculantWork, hw: Hardware,
                       repetition: int) -> Iterator[tuple[int, ...]]:
        """Cycle by cycle: each stage starts its next vector on the first cycle it is free,
        its input is ready and its output buffer has a slot; FFT units issue one transform a
        cycle each and write ``b`` words ``depth - 1`` cycles later; MAC lanes issue
        ``complex_mac_lanes`` complex MACs a cycle in block order, reading a block's ``b``
        spectrum words with its first MAC."""
        engine = hw.block_circulant
        assert engine is not None
        occupancy, latency = stage_times(work, engine)
        n, p, q, b = work.vectors, work.p_blocks, work.q_blocks, work.block_size
        bins = b // 2 + 1
        per_fft = butterflies_per_fft(b)
        depth = engine.fft_pipeline_depth
        c = engine.stage_buffer_depth
        starts: list[list[int | None]] = [[None] * STAGES for _ in range(n)]
        next_vector = [0] * STAGES
        busy_until = [0] * STAGES  # first cycle each stage may start a new vector
        issued_in_stage = [0] * STAGES  # work items issued for the vector in flight
        ifft_writes: dict[int, int] = {}  # cycle -> IFFTs whose results are written then
        done_cycle = None
        t = 0
        while done_cycle is None or t <= done_cycle:
            macs = butterflies = ifmap_reads = filter_reads = ofmap_writes = 0
            for k in range(STAGES):
                j = next_vector[k]
                if j < n and starts[j][k] is None and t >= busy_until[k]:
                    ready = k == 0 or (starts[j][k - 1] is not None
                                       and t >= starts[j][k - 1] + latency[k - 1])
                    slot = k == STAGES - 1 or j < c or (
                        starts[j - c][k + 1] is not None
                        and t >= starts[j - c][k + 1] + occupancy[k + 1])
                    if ready and slot:
                        starts[j][k] = t
                        busy_until[k] = t + occupancy[k]
                        issued_in_stage[k] = 0
                # issue this cycle's work for the vector the stage is working on
                active = next_vector[k]
                if active < n and starts[active][k] is not None:
                    if k == 0:
                        count = min(engine.fft_units, q - issued_in_stage[k])
                        butterflies += count * per_fft
                        ifmap_reads += count * b
                    elif k == 1:
                        count = min(engine.complex_mac_lanes, bins * p * q - issued_in_stage[k])
                        first_block = -(-issued_in_stage[k] // bins)
                        last_block = -(-(issued_in_stage[k] + count) // bins)
                        filter_reads += (last_block - first_block) * b
                        macs += count
                    else:
                        count = min(engine.ifft_units, p - issued_in_stage[k])
                        butterflies += count * per_fft
                        if count:
                            ifft_writes[t + depth - 1] = ifft_writes.get(t + depth - 1, 0) + count
                    issued_in_stage[k] += count
                    if t == starts[active][k] + occupancy[k] - 1:
                        next_vector[k] += 1
                        if k == STAGES - 1 and next_vector[k] == n:
                            done_cycle = t + depth - 1
            ofmap_writes = ifft_writes.pop(t, 0) * b
            yield (0, macs, butterflies, 0, ifmap_reads, filter_reads, 0, ofmap_writes)
            t += 1

    def peak_ops_per_cycle(self, hw: Hardware) -> int:
        assert hw.block_circulant is not None
        return hw.block_circulant.complex_mac_lanes

    def useful_ops(self, counts: OpCounts) -> int:
        return counts.complex_macs


BLOCK_CIRCULANT = BlockCirculantEngineModel()
