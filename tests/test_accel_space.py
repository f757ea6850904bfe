"""The accelerator search space: YAML, nni mutables, encoding, budget, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from a3cs_common.errors import ConfigError
from accelerator_model.encode import HardwareBatch
from accelerator_model.space import AcceleratorSpace


def _write(tmp_path: Path, repo: Path, body: str, base: str = "zc706_fpga.yaml") -> str:
    path = tmp_path / "space.yaml"
    path.write_text(f"name: s\nbase: {repo / 'experiments/hw' / base}\n{body}")
    return str(path)


def test_example_space(repo):
    space = AcceleratorSpace.from_yaml(str(repo / "experiments/hw/zc706_space.yaml"))
    assert space.size == 48600 and space.objective == "latency"
    assert space.labels == ("pe_shape", "dataflow", "sram_ifmap_kb", "sram_filter_kb",
                            "sram_ofmap_kb", "word_bits")
    assert space.sizes[0] == 81  # {rows: 9 values, cols: 9 values}
    space.check_budget_feasible()


def test_nni_mutable_samples_and_constraint(repo):
    from nni.mutable import SampleValidationError

    space = AcceleratorSpace.from_yaml(str(repo / "experiments/hw/zc706_space.yaml"))
    mutable = space.mutable()
    assert set(mutable.simplify()) == {*space.labels, "budget"}
    sample = mutable.robust_default()
    hw = space.hardware(sample)[0]
    assert (hw.pe_array.rows, hw.pe_array.cols) == sample["pe_shape"]
    over = dict(sample, pe_shape=(32, 225), word_bits=16)
    assert not mutable.contains(over)
    with pytest.raises(SampleValidationError, match="dsp"):
        mutable.validate(over)
    assert space.explain_budget(space.index_of(over)).startswith("needs 7200 dsp")
    # nni's strategies draw until the constraint holds, as here.
    samples, rejected, state = [], 0, np.random.RandomState(0)
    while len(samples) < 5:
        try:
            samples.append(mutable.random(random_state=state))
        except SampleValidationError:
            rejected += 1
    assert all(mutable.contains(s) for s in samples) and rejected > 0


def test_encode_equals_hardware_objects(repo):
    space = AcceleratorSpace.from_yaml(str(repo / "experiments/hw/zc706_space.yaml"))
    index = space.sample(40, torch.Generator().manual_seed(0))
    fast = space.encode(index)
    slow = HardwareBatch.from_hardware([space.hardware(space.values(row))[0] for row in index])
    for name in HardwareBatch.COLUMNS:
        assert torch.equal(getattr(fast, name), getattr(slow, name)), name
    assert torch.allclose(fast.energy, slow.energy, rtol=1e-12)


def test_grid_and_its_within_budget_batches(repo):
    """The grid walks every configuration in itertools.product order; its within-budget
    batches (made once, then reused by every accelerator search of a co-search) are the
    grid's batches with the over-budget configurations cut, the same on every walk."""
    import itertools

    space = AcceleratorSpace.from_yaml(str(repo / "a3cs/data/zc706_cosearch_space.yaml"))
    walked = torch.cat(list(space.grid(5000)))
    assert torch.equal(walked, torch.tensor(list(itertools.product(
        *(range(n) for n in space.sizes)))))
    expected = [(index[space.budget_reason(index) == 0], index.shape[0])
                for index in space.grid(5000)]
    for _ in range(2):  # made, then from the cache
        batches = list(space.within_budget(5000))
        assert [examined for _, examined in batches] == [n for _, n in expected]
        assert all(torch.equal(index, kept) and index.dtype == torch.long
                   for (index, _), (kept, _) in zip(batches, expected, strict=True))
    assert sum(index.shape[0] for index, _ in batches) == 50_016


def test_chunked_space_labels(tmp_path, repo):
    path = _write(tmp_path, repo, "chunks: {count: 2, assignment: [by_kind, by_size]}\n"
                  "parameters:\n  pe_shape: [[8, 8], [16, 16]]\n  dataflow: [os, ws]\n")
    space = AcceleratorSpace.from_yaml(path)
    assert space.labels == ("chunk0.pe_shape", "chunk0.dataflow", "chunk1.pe_shape",
                            "chunk1.dataflow", "chunk_assignment")
    assert space.size == 32 and space.rules == ("by_kind", "by_size")
    sample = space.values([1, 0, 0, 1, 1])
    first, second = space.hardware(sample)
    assert (first.pe_array.rows, first.pe_array.dataflow) == (16, "os")
    assert (second.pe_array.rows, second.pe_array.dataflow) == (8, "ws")


@pytest.mark.parametrize(("body", "field", "allowed"), [
    ("parameters:\n  pe_row: [4, 8]\n", "parameters.pe_row", "did you mean 'pe_rows'"),
    ("parameters:\n  pe_rows: []\n", "parameters.pe_rows", "at least 1"),
    ("parameters:\n  pe_rows: [4, 4]\n", "parameters.pe_rows", "without repeated"),
    ("parameters:\n  dataflow: [ws, xs]\n", "parameters.dataflow[1]", "'ws', 'os' or 'is'"),
    ("parameters:\n  word_bits: [8, 100]\n", "parameters.word_bits[1]", "<= 64"),
    ("parameters:\n  fft_units: [2, 4]\n", "parameters.fft_units", "block_circulant engine"),
    ("parameters:\n  pe_shape: [[4, 4]]\n  pe_rows: [4]\n", "parameters.pe_rows",
     "left out when pe_shape"),
    ("parameters: {}\n", "parameters", "at least one searched parameter"),
    ("chunks: {count: 3}\nparameters:\n  pe_rows: [4]\n", "chunks.count", "1 or 2"),
    ("objective: speed\nparameters:\n  pe_rows: [4]\n", "objective", "'latency'"),
    # 101 ** 3 buffer-size combinations: each one's energy table would be made
    ("parameters:\n" + "".join(f"  sram_{b}_kb: {list(range(8, 109))}\n"
                                for b in ("ifmap", "filter", "ofmap")),
     "parameters", "at most 1,000,000 combinations"),
])
def test_bad_space_yaml(tmp_path, repo, body, field, allowed):
    with pytest.raises(ConfigError) as error:
        AcceleratorSpace.from_yaml(_write(tmp_path, repo, body))
    assert error.value.field == field
    assert allowed in error.value.allowed
    assert "\n" not in str(error.value)


def test_bad_base_and_budget(tmp_path, repo):
    bad_budget = tmp_path / "hw.yaml"
    bad_budget.write_text((repo / "experiments/hw/zc706_fpga.yaml").read_text().replace(
        "dsp: 900", "dsp: -5"))
    with pytest.raises(ConfigError) as error:
        AcceleratorSpace.from_yaml(_write(tmp_path, repo, "parameters:\n  pe_rows: [4]\n",
                                          base=str(bad_budget)))
    assert error.value.field == "budget.fpga.dsp"
    with pytest.raises(ConfigError) as error:
        AcceleratorSpace.from_yaml(_write(tmp_path, repo, "parameters:\n  pe_rows: [4]\n",
                                          base="missing.yaml"))
    assert error.value.field == "base"
    tight = tmp_path / "tight.yaml"
    tight.write_text((repo / "experiments/hw/zc706_fpga.yaml").read_text().replace(
        "dsp: 900", "dsp: 10"))
    space = AcceleratorSpace.from_yaml(_write(tmp_path, repo,
                                              "parameters:\n  pe_rows: [8, 30]\n",
                                              base=str(tight)))
    with pytest.raises(ConfigError) as error:
        space.check_budget_feasible()
    assert error.value.field == "budget" and "the smallest needs 240 dsp" in error.value.allowed


def test_sample_values_are_checked(repo):
    space = AcceleratorSpace.from_yaml(str(repo / "experiments/hw/zc706_space.yaml"))
    with pytest.raises(ConfigError, match="dataflow"):
        space.index_of({**space.values([0] * 6), "dataflow": "xs"})
    with pytest.raises(ConfigError, match="word_bits"):
        space.index_of({k: v for k, v in space.values([0] * 6).items() if k != "word_bits"})
    assert space.index_of({**space.values([3, 1, 0, 0, 0, 1]), "pe_shape": [1, 64]}) == \
        [5, 1, 0, 0, 0, 1]
