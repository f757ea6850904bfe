"""Search spaces and the single-path supernet."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from a3cs_common.errors import ConfigError
from a3cs_common.formats import Dense, OneByN
from a3cs_common.schema import validate
from hw_sim.workload import BlockCirculant
from nas.layers import expand_circulant
from nas.space import SearchSpace, load_space, pixel_space, vector_space
from nas.supernet import SuperNet, apply_format
from nas.torch_formats import circulant_projection

OBS = (4, 10, 10)


def test_default_spaces_fit_and_sample():
    space = pixel_space()
    mutable = space.mutable(OBS)
    for seed in range(20):
        sample = mutable.random(random_state=np.random.RandomState(seed))
        arch = space.arch(sample, OBS)
        arch.plan(OBS)  # every sampled architecture fits the observation
        workload = arch.workload(OBS, action_dim=3)
        assert workload.layers[-2].name == "policy"
    assert "skip" not in space.choices(OBS)["layers.0.op"]
    assert "bc8" not in space.choices(OBS)["layers.0.format"]  # 8 does not divide 4 channels
    assert "bc8" in space.choices(OBS)["layers.1.format"]
    vector = vector_space()
    arch = vector.arch(vector.mutable((17,)).random(random_state=np.random.RandomState(0)), (17,))
    arch.plan((17,))


def test_sample_of_inverts_arch():
    from nas.arch import Arch, HeadSpec, LayerSpec, reference_arch

    for space, obs in ((pixel_space(), (4, 10, 10)), (vector_space(), (4,))):
        reference = reference_arch(obs)
        sample = space.sample_of(reference, obs)
        assert sample is not None
        rebuilt = space.arch(sample, obs)
        assert [la for la in rebuilt.layers if la.op != "skip"] == list(reference.layers)
        assert rebuilt.head == reference.head
    space, obs = pixel_space(), (4, 10, 10)
    too_deep = Arch(name="deep", layers=(LayerSpec(op="conv3x3", width=16),) * 4,
                    head=HeadSpec(width=128))
    odd_width = Arch(name="odd", layers=(LayerSpec(op="conv3x3", width=24),),
                     head=HeadSpec(width=128))
    assert space.sample_of(too_deep, obs) is None and space.sample_of(odd_width, obs) is None


def test_bad_spaces():
    base = {"observation": "pixels", "num_layers": 1, "ops": ["conv3x3"], "widths": [16],
            "head_widths": [16]}
    with pytest.raises(ConfigError, match=r"widths: got 12; allowed: multiples of 8"):
        validate(SearchSpace, {**base, "widths": [12]})
    with pytest.raises(ConfigError, match=r"ops: got 'linear'"):
        validate(SearchSpace, {**base, "ops": ["linear"]})
    space = SearchSpace(observation="pixels", num_layers=3, ops=("conv5x5",), widths=(16,),
                        head_widths=(16,), padding=("valid", "valid", "valid"))
    with pytest.raises(ConfigError, match=r"padding\[2\]: got 'valid'"):
        space.check_fits(OBS)
    with pytest.raises(ConfigError, match="observation"):
        pixel_space().check_fits((4,))
    with pytest.raises(ConfigError, match=r"layers\.0\.op: got 'skip'"):
        pixel_space().arch({"layers.0.op": "skip"}, OBS)


def test_load_space_yaml(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("observation: pixels\nnum_layers: 2\nops: [conv3x3, skip]\nwidths: [16]\n"
                    "head_widths: [32]\nformats: [{type: dense}, {type: block_circulant, "
                    "block_size: 4}]\nhead_formats: [{type: dense}]\n")
    space = load_space(str(path))
    assert space.size(OBS) == (1 * 1 * 2) * (2 * 1 * 2) * 1 * 1
    path.write_text(path.read_text().replace("widths: [16]", "widhts: [16]"))
    with pytest.raises(ConfigError, match="did you mean 'widths'"):
        load_space(str(path))


def test_circulant_projection_is_orthogonal_projection():
    torch.manual_seed(0)
    circulant = expand_circulant(torch.randn(3, 2, 4))
    assert torch.allclose(circulant_projection(circulant, 4), circulant, atol=1e-6)
    matrix = torch.randn(12, 8)
    projected = circulant_projection(matrix, 4)
    assert torch.allclose(circulant_projection(projected, 4), projected, atol=1e-6)
    assert abs(float(((matrix - projected) * projected).sum())) < 1e-4


def test_one_by_n_format_prunes_blocks():
    weight = torch.randn(8, 6, 3, 3)
    pruned = apply_format(weight, OneByN(n=4, sparsity=0.5))
    blocks = pruned.reshape(2, 4, 6, 9).abs().sum(dim=(1, 3))
    assert int((blocks > 0).sum()) == 6  # half of the 2 x 6 blocks
    conv_bc = apply_format(weight, BlockCirculant(block_size=2))
    tap = conv_bc[:, :, 1, 2]
    assert torch.allclose(circulant_projection(tap, 2), tap, atol=1e-6)


def test_supernet_paths_gradients_and_derive():
    generator = torch.Generator().manual_seed(0)
    net = SuperNet(pixel_space(), OBS, action_dim=3, generator=generator)
    seen = set()
    for _ in range(8):
        path = net.sample_path(tau=1.0, generator=generator)
        seen.add(path.indices["layers.0.op"])
        dist, value = net(torch.rand(5, *OBS), path)
        assert dist.shape == (5, 3) and value.shape == (5,)
        net.zero_grad()
        (dist.pow(2).sum() + value.sum()).backward()
        assert net.arch_logits["layers.0.op"].grad.abs().sum() > 0
        assert net.arch_logits["head.width"].grad.abs().sum() > 0
    assert len(seen) > 1
    arch = net.derive()
    arch.plan(OBS)
    assert {p.shape for p in net.arch_parameters()} <= {torch.Size([n]) for n in range(2, 11)}


def test_supernet_sampling_is_deterministic_for_a_seed():
    def run(seed: int) -> list[dict[str, int]]:
        generator = torch.Generator().manual_seed(seed)
        net = SuperNet(pixel_space(), OBS, action_dim=3, generator=generator)
        return [net.sample_path(0.5, generator).indices for _ in range(4)]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_fixed_path_function_matches_its_gates_of_one():
    generator = torch.Generator().manual_seed(3)
    net = SuperNet(vector_space(), (6,), action_dim=2, gaussian=True, generator=generator)
    path = net.sample_path(1.0, generator)
    obs = torch.rand(4, 6)
    sampled, _ = net(obs, path)
    net.use_architecture(path.indices)
    fixed, _ = net(obs)  # the acting path
    assert torch.allclose(sampled, fixed)
    assert torch.equal(net(obs, net.fixed_path(path.indices))[0], fixed)
    with pytest.raises(RuntimeError, match="no path"):
        SuperNet(vector_space(), (6,), action_dim=2)(obs)
    assert sampled.shape == (4, 4)  # mean and log-std of a 2-d action
    assert OneByN(n=4, sparsity=0.75).label() == "1x4@0.75"
    assert OneByN(n=4, density=0.25).label() == "1x4@0.75"


def test_expected_cost_is_exact():
    from nas.expected_cost import CandidateTable

    space = pixel_space()
    table = CandidateTable(space, OBS, action_dim=3)
    macs = torch.tensor([float(layer.dense_macs) for layer in table.layers])
    generator = torch.Generator().manual_seed(0)
    net = SuperNet(space, OBS, action_dim=3, generator=generator)
    with torch.no_grad():  # a non-uniform distribution
        for label in net.choices:
            net.arch_logits[label].copy_(torch.randn(len(net.choices[label]),
                                                     generator=generator))
    # one path: the cost of the architecture's own workload
    path = net.sample_path(1.0, generator)
    arch = space.arch_from_indices(path.indices, OBS)
    assert float(table.path_cost(path.indices, macs)) == arch.workload(OBS, 3).dense_macs
    # the expectation: brute force over a reduced space (two positions enumerated exactly)
    small = SearchSpace(observation="pixels", num_layers=2, ops=("conv3x3", "conv1x1", "skip"),
                        widths=(16, 32), head_widths=(32, 64),
                        formats=(BlockCirculant(block_size=4), OneByN(n=4, sparsity=0.5)),
                        head_formats=(BlockCirculant(block_size=8),))
    table = CandidateTable(small, OBS, action_dim=3)
    cost = torch.tensor([float(layer.stored_weight_words) for layer in table.layers])
    logits = {label: torch.randn(len(values), generator=generator, requires_grad=True)
              for label, values in small.choices(OBS).items()}
    probs = {label: torch.softmax(v, 0) for label, v in logits.items()}
    expected = table.expected(probs, cost)
    import itertools

    labels = list(small.choices(OBS))
    brute = 0.0
    for combo in itertools.product(*(range(len(small.choices(OBS)[k])) for k in labels)):
        indices = dict(zip(labels, combo, strict=True))
        weight = 1.0
        for label, index in indices.items():
            weight *= float(probs[label][index].detach())
        words = small.arch_from_indices(indices, OBS).workload(OBS, 3).stored_weight_words
        brute += weight * words
    assert float(expected.detach()) == pytest.approx(brute, rel=1e-5)
    expected.backward()
    assert all(v.grad.abs().sum() > 0 for v in logits.values() if len(v) > 1)
    # priced as a row_balanced training prunes: every 1xN candidate's mask drawn balanced
    balanced = CandidateTable(small, OBS, action_dim=3, balanced_masks=True)
    one_by_n = [(a.weight_format, b.weight_format) for a, b in zip(
        table.layers, balanced.layers, strict=True) if isinstance(a.weight_format, OneByN)]
    assert one_by_n and all(b.balanced and not a.balanced for a, b in one_by_n)


def test_fair_paths_use_every_option_equally_often():
    net = SuperNet(pixel_space(), OBS, action_dim=3)
    generator = torch.Generator().manual_seed(0)
    most = max(len(v) for v in net.choices.values())
    paths = net.fair_paths(2 * most, generator)
    for label, values in net.choices.items():
        counts = [0] * len(values)
        for path in paths[: len(values)]:
            counts[path.indices[label]] += 1
        assert counts == [1] * len(values), label  # every option once in each run
    obs = torch.rand(2, *OBS)
    assert net(obs, paths[0])[0].shape == (2, 3)


def test_per_format_weights_are_separate_copies():
    shared = SuperNet(pixel_space(), OBS, action_dim=3, generator=torch.Generator().manual_seed(0))
    few_shot = SuperNet(pixel_space(), OBS, action_dim=3, weight_sharing="per_format",
                        generator=torch.Generator().manual_seed(0))
    assert not any("group_weights" in k for k in shared.state_dict())
    copies = [k for k in few_shot.state_dict() if "group_weights" in k]
    assert {k.split("group_weights.")[1] for k in copies} == {"block_circulant", "one_by_n"}
    head = next(iter(few_shot.heads.values()))
    dense = head.formatted(8, head.weight.shape[1], Dense())
    sparse = head.formatted(8, head.weight.shape[1], OneByN(n=4, density=1.0))
    assert not torch.equal(dense, sparse)  # density 1 keeps every block: a different tensor
    with pytest.raises(ConfigError, match=r"supernet\.weight_sharing"):
        SuperNet(pixel_space(), OBS, action_dim=3, weight_sharing="per_layer")
