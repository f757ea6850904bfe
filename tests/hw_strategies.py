"""Hypothesis strategies for small random layers and hardware configurations."""

from __future__ import annotations

from hypothesis import strategies as st

from hw_sim.hardware import Hardware
from hw_sim.workload import Conv2d, Linear

# Buffer sizes in words, from smaller than one layer's data (chunking, partial-sum spills,
# re-fetched operands) to large enough to hold everything (resident operands).
SRAM_WORDS = st.sampled_from([32, 64, 128, 256, 2048])


@st.composite
def hardware(draw: st.DrawFn, dataflow: str | None = None) -> Hardware:
    """A small accelerator with every engine, so any layer format runs on it."""
    word_bits = draw(st.sampled_from([8, 16]))

    def kib() -> float:
        return draw(SRAM_WORDS) * word_bits / 8192

    return Hardware.model_validate({
        "name": "random",
        "clock_mhz": 100,
        "word_bits": word_bits,
        "pe_array": {"rows": draw(st.integers(2, 8)), "cols": draw(st.integers(2, 8)),
                     "dataflow": dataflow or draw(st.sampled_from(["ws", "os", "is"]))},
        "sram_kb": {"ifmap": kib(), "filter": kib(), "ofmap": kib()},
        "dram": {"bandwidth_words_per_cycle": draw(st.none() | st.integers(1, 16))},
        "keep_weights_on_chip": draw(st.booleans()),
        "block_circulant": {
            "fft_points": 8, "fft_units": draw(st.integers(1, 3)),
            "ifft_units": draw(st.integers(1, 3)), "fft_pipeline_depth": draw(st.integers(1, 6)),
            "complex_mac_lanes": draw(st.integers(1, 16)),
            "stage_buffer_depth": draw(st.integers(1, 3)),
        },
        "one_by_n": {
            "vector_lanes": draw(st.integers(1, 4)), "lane_width": draw(st.sampled_from([1, 2, 4])),
            "index_decode_cycles": draw(st.integers(0, 2)),
            "accumulator_depth": draw(st.integers(1, 16)),
        },
        "n_m": True,
    })


@st.composite
def weight_format(draw: st.DrawFn, fmt: str, rows: int, cols: int) -> dict:
    """A weight format for a layer whose 1xN mask would be ``rows x cols``."""
    if fmt == "dense":
        return {"type": "dense"}
    if fmt == "block_circulant":
        return {"type": "block_circulant", "block_size": draw(st.sampled_from([2, 4]))}
    if fmt == "n_m":
        m = draw(st.sampled_from([2, 3, 4, 8]))
        return {"type": "n_m", "n": draw(st.integers(1, m - 1)), "m": m}
    if draw(st.booleans()):
        return {"type": "one_by_n", "density": draw(st.sampled_from([0.2, 0.5, 0.8, 1.0])),
                "seed": draw(st.integers(0, 5))}
    mask = draw(st.lists(st.lists(st.booleans(), min_size=cols, max_size=cols),
                         min_size=rows, max_size=rows))
    mask[0][0] = True  # at least one kept block
    return {"type": "one_by_n", "mask": mask}


@st.composite
def layer(draw: st.DrawFn, fmt: str = "dense") -> Conv2d | Linear:
    """A small conv or linear layer in format ``fmt`` (valid for that format)."""
    unit = 4 if fmt == "block_circulant" else 1
    n = draw(st.sampled_from([1, 2, 4])) if fmt == "one_by_n" else 1
    out_mult = max(unit, n)
    if draw(st.booleans()):
        groups = 1 if fmt == "block_circulant" else draw(st.sampled_from([1, 1, 2]))
        in_channels = groups * unit * draw(st.integers(1, 2 if unit > 1 else 4))
        out_channels = groups * out_mult * draw(st.integers(1, 3))
        wf = draw(weight_format(fmt, out_channels // n, in_channels // groups))
        if fmt == "one_by_n":
            wf["n"] = n
        if fmt == "block_circulant":
            wf["block_size"] = min(wf["block_size"], in_channels // groups, out_channels // groups)
        kernel = draw(st.integers(1, 3))
        return Conv2d(
            name="conv", in_channels=in_channels, out_channels=out_channels,
            in_height=draw(st.integers(kernel, 5)), in_width=draw(st.integers(kernel, 5)),
            kernel_size=kernel, stride=draw(st.integers(1, 2)), padding=draw(st.integers(0, 1)),
            groups=groups, batch=draw(st.integers(1, 2)), weight_format=wf,
        )
    in_features = unit * draw(st.integers(1, 6 if unit > 1 else 24))
    out_features = out_mult * draw(st.integers(1, 4 if out_mult > 1 else 12))
    wf = draw(weight_format(fmt, out_features // n, in_features))
    if fmt == "one_by_n":
        wf["n"] = n
    return Linear(name="fc", in_features=in_features, out_features=out_features,
                  batch=draw(st.integers(1, 4)), weight_format=wf)
