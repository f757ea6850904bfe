"""The weight-format registry (a3cs_common.formats) and N:M sparsity through the packages."""

from __future__ import annotations

import pytest
import torch
import yaml
from pydantic import TypeAdapter

from a3cs_common.errors import ConfigError
from a3cs_common.formats import (
    FORMAT_BY_TYPE,
    FORMATS,
    NM,
    BlockCirculant,
    Dense,
    OneByN,
    WeightFormat,
    format_class,
)
from a3cs_common.schema import validate
from hw_sim.workload import Conv2d, Linear
from nas.arch import Arch
from nas.layers import NMConv2d, NMLinear, cubic_sparsity_schedule, n_m_mask, prune_to_schedule
from nas.supernet import apply_format
from nas.torch_formats import TORCH_FORMATS

EXAMPLES = (Dense(), BlockCirculant(block_size=4), OneByN(n=4, density=0.5), NM(n=2, m=4))


def test_every_format_is_registered_once_with_its_torch_side() -> None:
    assert {cls.model_fields["type"].default for cls in FORMATS} == set(FORMAT_BY_TYPE)
    assert set(TORCH_FORMATS) == set(FORMAT_BY_TYPE)
    assert {type(fmt) for fmt in EXAMPLES} == set(FORMATS)
    with pytest.raises(ConfigError, match=r"weight_format\.type: got 'csr'; allowed: one of dense"):
        format_class("csr")


@pytest.mark.parametrize("fmt", EXAMPLES, ids=lambda f: f.label())
def test_yaml_form_reads_back_equal(fmt) -> None:
    text = yaml.safe_dump(fmt.dump())
    assert TypeAdapter(WeightFormat).validate_python(yaml.safe_load(text)) == fmt


def test_storage_and_operations_of_each_format_on_one_layer() -> None:
    # 16 -> 32 channels, 3x3 kernel, 6x6 output: M = 36, N = 32, K = 144
    def layer(fmt):
        return Conv2d(name="c", in_channels=16, out_channels=32, in_height=8, in_width=8,
                      kernel_size=3, weight_format=fmt)

    dense = layer(Dense())
    assert (dense.gemm_m, dense.gemm_n, dense.gemm_k) == (36, 32, 144)
    assert dense.stored_weight_words == 32 * 144 and dense.flops == 2 * 36 * 32 * 144
    assert layer(BlockCirculant(block_size=4)).stored_weight_words == 32 * 144 // 4
    nm = layer(NM(n=2, m=4))
    assert nm.weight_format.value_words(nm) == 32 * 72
    assert nm.weight_format.index_words(nm) == 32 * 72 * 2 // 8  # 2-bit positions, 8-bit words
    assert nm.flops == 2 * 36 * 32 * 72 and nm.weight_density == 0.5


@pytest.mark.parametrize(("k", "n", "m", "kept"), [(8, 2, 4, 4), (10, 2, 4, 6), (9, 2, 4, 5),
                                                   (3, 1, 4, 1), (7, 3, 8, 3), (17, 1, 8, 3)])
def test_n_m_keeps_n_of_every_m_and_the_start_of_a_partial_group(k, n, m, kept) -> None:
    assert NM(n=n, m=m).kept_per_column(k) == kept
    weight = torch.randn(5, k)
    mask = n_m_mask(weight, n, m)
    assert mask.shape == weight.shape and (mask.sum(dim=1) == kept).all()
    for start in range(0, k, m):  # the largest magnitudes of each group are the kept ones
        group = weight[:, start:start + m].abs()
        chosen = group[mask[:, start:start + m]].reshape(5, -1)
        dropped = group[~mask[:, start:start + m]].reshape(5, -1)
        if dropped.numel():
            assert (chosen.min(dim=1).values >= dropped.max(dim=1).values).all()


@pytest.mark.parametrize(("n", "m", "allowed"), [(4, 4, "[1, m)"), (5, 4, "[1, m)"),
                                                 (1, 1, "integer >= 2")])
def test_bad_n_m_is_one_line(n, m, allowed) -> None:
    with pytest.raises(ConfigError, match=r"allowed: .*" + allowed.replace("[", r"\[").replace(
            "(", r"\(").replace(")", r"\)")):
        validate(NM, {"n": n, "m": m})


def test_n_m_conv_groups_run_along_channels_within_each_tap() -> None:
    layer = NMConv2d(8, 4, 3, 2, 4)
    layer.prune_(layer.target_sparsity)
    # [out, in, kh, kw] -> [out, kh, kw, in]: every 4 consecutive input channels of a tap keep 2
    groups = layer.mask.permute(0, 2, 3, 1).reshape(4, 9, 2, 4)
    assert (groups.sum(dim=-1) == 2).all()
    assert layer.sparsity == pytest.approx(0.5)
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(layer(x), torch.nn.functional.conv2d(
        x, layer.weight * layer.mask, layer.bias))
    exported = layer.hw_sim_layer("conv", tuple(x.shape))
    assert exported.weight_format == NM(n=2, m=4) and exported.batch == 2


def test_n_m_pruning_is_gradual_and_ends_at_n_of_m() -> None:
    layer = NMLinear(16, 8, 1, 4)
    schedule = cubic_sparsity_schedule(0.0, 0.5)
    kept = []
    for progress in (0.0, 0.1, 0.2, 0.5, 1.0):
        prune_to_schedule(layer, progress, schedule)
        kept.append(int(layer.mask.sum()))
    assert kept == sorted(kept, reverse=True) and kept[0] == 128 and kept[-1] == 32
    assert len(set(kept)) > 2  # passes through 3:4 and 2:4 on its way
    assert (layer.weight[~layer.mask] == 0).all()


def test_supernet_projection_and_architecture_build_n_m() -> None:
    weight = torch.randn(8, 12)
    projected = apply_format(weight, NM(n=1, m=4))
    assert ((projected != 0).reshape(8, 3, 4).sum(dim=-1) == 1).all()
    arch = Arch.model_validate({"layers": [{"op": "conv3x3", "width": 16,
                                            "weight_format": {"type": "n_m", "n": 2, "m": 4}}],
                                "head": {"width": 64, "weight_format": {"type": "n_m", "n": 1,
                                                                        "m": 8}}})
    workload = arch.workload((4, 10, 10), 3)
    assert [layer.weight_format.label() for layer in workload.layers] == [
        "2:4", "1:8", "dense", "dense"]


def test_old_architecture_files_with_sparsity_still_read() -> None:
    legacy = {"type": "one_by_n", "n": 4, "sparsity": 0.75}
    fmt = TypeAdapter(WeightFormat).validate_python(legacy)
    assert fmt == OneByN(n=4, density=0.25) and fmt.label() == "1x4@0.75"
    with pytest.raises(ConfigError, match=r"sparsity: got 1\.5; allowed: a fraction in"):
        validate(OneByN, {"n": 4, "sparsity": 1.5})
    with pytest.raises(ConfigError, match=r"head\.weight_format\.mask: got 'a mask'"):
        validate(Arch, {"head": {"width": 8, "weight_format": {
            "type": "one_by_n", "n": 4, "mask": ["1"] * 2}}})


def test_linear_layer_reports_n_m_like_the_conv() -> None:
    lay = Linear(name="fc", in_features=10, out_features=3, weight_format=NM(n=2, m=4))
    assert lay.weight_format.value_words(lay) == 3 * 6


def test_n_m_is_a_co_search_choice_on_both_sides(repo, tmp_path):
    """A search space offering N:M trains through the supernet and derives an architecture
    whose workload the analytical model costs on a searched accelerator that skips zeros."""
    from accelerator_model.model import estimate
    from accelerator_model.space import AcceleratorSpace
    from nas.space import SearchSpace
    from nas.supernet import SuperNet

    obs = (4, 10, 10)
    space = SearchSpace(observation="pixels", num_layers=2, ops=("conv3x3", "skip"),
                        widths=(16,), head_widths=(32,),
                        formats=(Dense(), NM(n=2, m=4)), head_formats=(NM(n=1, m=8),))
    generator = torch.Generator().manual_seed(0)
    net = SuperNet(space, obs, action_dim=3, generator=generator)
    for _ in range(4):
        logits, value = net(torch.rand(2, *obs), net.sample_path(1.0, generator))
        (logits.sum() + value.sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in net.arch_parameters() if p.grad is not None)
    net.use_architecture({label: len(values) - 1 for label, values in
                          space.choices(obs).items()})
    arch = net.derive()
    workload = arch.workload(obs, 3)
    assert {layer.weight_format.label() for layer in workload.layers} >= {"1:8"}
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump({
        "name": "n_m_space", "base": str(repo / "a3cs/data/zc706_cosearch.yaml"),
        "parameters": {"pe_rows": [8, 16], "n_m": [False, True]}}))
    hw_space = AcceleratorSpace.from_yaml(str(space_file))
    (skipping,) = hw_space.hardware({"pe_rows": 16, "n_m": True})
    (dense,) = hw_space.hardware({"pe_rows": 16, "n_m": False})
    assert skipping.n_m and estimate(workload, skipping).total_cycles > 0
    with pytest.raises(ConfigError, match="n_m: got False; allowed: true"):
        estimate(workload, dense)


@pytest.mark.parametrize(("fmt", "message"), [
    ("{type: n_m, n: 4, m: 4}", "layers[0].weight_format.n: got 4; allowed: an integer in [1, m)"),
    ("{type: n_m, n: 1, m: 1}", "layers[0].weight_format.m: got 1; allowed: an integer >= 2"),
    ("{type: n_m, n: 2}", "layers[0].weight_format.m"),
])
def test_bad_n_m_in_a_workload_is_one_line_exit_2(tmp_path, capsys, fmt, message) -> None:
    from a3cs.cli import main

    workload = tmp_path / "w.yaml"
    workload.write_text("name: w\nlayers:\n  - {name: fc, kind: linear, in_features: 8, "
                        f"out_features: 4, weight_format: {fmt}}}\n")
    hw = tmp_path / "hw.yaml"
    hw.write_text("name: h\nclock_mhz: 100\npe_array: {rows: 4, cols: 4, dataflow: ws}\n"
                  "sram_kb: {ifmap: 8, filter: 8, ofmap: 8}\nn_m: true\n")
    assert main(["simulate", "--hw", str(hw), "--workload", str(workload)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_balanced_random_mask_keeps_the_trained_count_in_every_block_row() -> None:
    """Row-balanced pruning (block_l1_mask with balanced=True) keeps ``in - round(sparsity *
    in)`` blocks in every block row; the balanced random mask the search prices keeps the
    same, while the plain one leaves rows uneven."""
    from nas.layers import block_l1_mask

    layer = Linear(name="fc", in_features=100, out_features=64)
    trained = block_l1_mask(torch.randn(64, 100), 8, 0.75, balanced=True).numpy()
    balanced = OneByN(n=8, density=0.25, balanced=True).block_mask(layer)
    plain = OneByN(n=8, density=0.25).block_mask(layer)
    assert balanced.shape == plain.shape == trained.shape == (8, 100)
    assert list(balanced.sum(axis=1)) == list(trained.sum(axis=1)) == [25] * 8
    assert plain.sum() == 200 and len(set(plain.sum(axis=1))) > 1
    assert OneByN(n=8, density=0.25).dump() == {"type": "one_by_n", "n": 8, "density": 0.25,
                                                "seed": 0}  # files written before stay equal
    with pytest.raises(ConfigError, match=r"balanced: got True; allowed: false with an explicit"):
        validate(OneByN, {"n": 4, "mask": ["11"], "balanced": True})
    with pytest.raises(ConfigError, match=r"head\.weight_format\.balanced: got True; allowed: "
                                          r"false in an architecture"):
        validate(Arch, {"head": {"width": 8, "weight_format": {
            "type": "one_by_n", "n": 4, "density": 0.5, "balanced": True}}})
