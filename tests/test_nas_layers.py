"""Compressed layers: block-circulant and 1xN against hw_sim's functional models and the
expanded dense product; 1xN masks and the sparsity schedule; hw_sim export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from a3cs_common.errors import ConfigError
from hw_sim import functional
from hw_sim.workload import BlockCirculant, Conv2d, OneByN
from nas.layers import (
    BlockCirculantConv2d,
    BlockCirculantLinear,
    NMLinear,
    OneByNConv2d,
    OneByNLinear,
    block_l1_mask,
    cubic_sparsity_schedule,
    dense_pass,
    expand_circulant,
    prune_to_schedule,
)


@pytest.fixture(autouse=True)
def _float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def test_expand_circulant_matches_hw_sim_convention() -> None:
    vectors = torch.randn(3, 2, 8)
    np.testing.assert_allclose(expand_circulant(vectors).numpy(),
                               functional.expand_circulant(vectors.numpy()), atol=0)
    block = expand_circulant(vectors[:1, :1])
    w = vectors[0, 0]
    for r in range(8):
        for s in range(8):
            assert block[r, s] == w[(r - s) % 8]  # C[r, s] = w[(r - s) mod b]


@pytest.mark.parametrize("algorithm", ["fft", "expanded"])
@pytest.mark.parametrize("block_size", [2, 4, 8, 16])
def test_block_circulant_linear_equals_expanded_dense_product(block_size: int,
                                                              algorithm: str) -> None:
    layer = BlockCirculantLinear(32, 48, block_size, algorithm=algorithm)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(5, 3, 32)
    expected = x @ layer.dense_weight().T + layer.bias
    torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)
    gemm = functional.circulant_gemm(x.reshape(-1, 32).numpy(), layer.weight.detach().numpy())
    np.testing.assert_allclose(layer(x).detach().reshape(-1, 48).numpy() - layer.bias.detach()
                               .numpy(), gemm, atol=1e-10)


@pytest.mark.parametrize("algorithm", ["fft", "expanded"])
@pytest.mark.parametrize(("kernel", "stride", "padding"), [(3, 1, 0), (3, 2, 1), (1, 1, 0),
                                                          (5, 1, 2)])
def test_block_circulant_conv_equals_dense_conv_and_hw_sim(kernel: int, stride: int,
                                                           padding: int, algorithm: str) -> None:
    layer = BlockCirculantConv2d(8, 16, kernel, 4, stride=stride, padding=padding,
                                 algorithm=algorithm)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, 8, 9, 7)
    dense = F.conv2d(x, layer.dense_weight(), layer.bias, stride, padding)
    torch.testing.assert_close(layer(x), dense, rtol=1e-10, atol=1e-10)

    hw = layer.hw_sim_layer("conv", tuple(x.shape))
    assert hw.weight_format == BlockCirculant(block_size=4)
    cols = functional.im2col(x.numpy(), hw)[0]
    out = functional.circulant_gemm(cols, layer.weight.detach().numpy())
    reference = functional.col2im(out[None], hw) + layer.bias.detach().numpy()[None, :, None, None]
    np.testing.assert_allclose(layer(x).detach().numpy(), reference, atol=1e-10)


@pytest.mark.parametrize("algorithm", ["fft", "expanded"])
def test_block_circulant_gradients_flow_through_fft(algorithm: str) -> None:
    layer = BlockCirculantLinear(16, 16, 4, algorithm=algorithm)
    x = torch.randn(4, 16)
    torch.autograd.gradcheck(lambda w: torch.nn.functional.linear(x, expand_circulant(w)),
                             (layer.weight.detach().clone().requires_grad_(),))
    (layer(x) ** 2).sum().backward()
    manual = layer.weight.detach().clone().requires_grad_()
    ((x @ expand_circulant(manual).T + layer.bias.detach()) ** 2).sum().backward()
    torch.testing.assert_close(layer.weight.grad, manual.grad)


def test_block_circulant_rejects_block_sizes_that_do_not_divide() -> None:
    with pytest.raises(ConfigError, match="block_size"):
        BlockCirculantLinear(12, 16, 8)
    with pytest.raises(ConfigError):
        BlockCirculantConv2d(4, 16, 3, 3)  # not a power of two
    with pytest.raises(ConfigError, match="algorithm: got 'dft'"):
        BlockCirculantLinear(16, 16, 4, algorithm="dft")


@pytest.mark.parametrize(("n", "sparsity"), [(2, 0.5), (4, 0.75), (8, 0.3), (4, 0.0)])
def test_one_by_n_mask_has_exact_block_structure_and_sparsity(n: int, sparsity: float) -> None:
    layer = OneByNConv2d(6, 16, 3, n, sparsity)
    layer.prune_(sparsity)
    blocks = (16 // n) * 6
    assert layer.mask.shape == (16 // n, 6)
    assert int((~layer.mask).sum()) == round(sparsity * blocks)
    assert layer.sparsity == pytest.approx(round(sparsity * blocks) / blocks)
    # [P, n, C, taps] -> [P, C, n, taps]: one row per block (n outputs x 1 input x 9 taps)
    weight = layer.masked_weight().detach().reshape(16 // n, n, 6, 9).permute(0, 2, 1, 3)
    zero_blocks = (weight == 0).all(dim=(2, 3))
    torch.testing.assert_close(zero_blocks, ~layer.mask)
    # pruned blocks are zero in the parameter too, and every kept block is whole
    param = layer.weight.detach().reshape(16 // n, n, 6, 9).permute(0, 2, 1, 3)
    assert (param[~layer.mask] == 0).all()
    assert (weight[layer.mask] != 0).all()


def test_one_by_n_keeps_the_blocks_of_largest_l1_norm() -> None:
    weight = torch.zeros(8, 3)
    norms = torch.tensor([[5.0, 1.0, 3.0], [2.0, 6.0, 4.0]])  # 2 blocks of 4 rows x 3 inputs
    weight.view(2, 4, 3)[:] = (norms / 4)[:, None, :]
    mask = block_l1_mask(weight, 4, 0.5)
    expected = torch.tensor([[True, False, False], [False, True, True]])
    torch.testing.assert_close(mask, expected)


def test_pruning_is_monotone_under_the_schedule() -> None:
    layer = OneByNLinear(32, 16, 4, 0.75)
    schedule = cubic_sparsity_schedule(0.1, 0.6)
    previous = torch.ones_like(layer.mask)
    for progress in np.linspace(0, 1, 21):
        prune_to_schedule(layer, float(progress), schedule)
        assert not (layer.mask & ~previous).any()  # nothing pruned comes back
        previous = layer.mask.clone()
    assert layer.sparsity == pytest.approx(0.75)
    assert schedule(0.0) == 0.0 and schedule(0.1) == 0.0 and schedule(0.6) == 1.0
    assert schedule(0.35) == pytest.approx(1 - 0.5**3)


def test_one_by_n_conv_matches_hw_sim_functional_and_export() -> None:
    layer = OneByNConv2d(6, 8, 3, 4, 0.5, padding=1)
    layer.prune_(0.5)
    x = torch.randn(2, 6, 5, 5)
    hw = layer.hw_sim_layer("conv", tuple(x.shape))
    assert isinstance(hw, Conv2d) and isinstance(hw.weight_format, OneByN)
    np.testing.assert_array_equal(hw.block_mask(), layer.mask.numpy())
    # torch layout [out, in, kh, kw] -> hw_sim values [P, C, n, taps]
    values = layer.weight.detach().reshape(2, 4, 6, 9).permute(0, 2, 1, 3).numpy()
    cols = functional.im2col(x.numpy(), hw)[0]
    out = functional.one_by_n_gemm(cols, values, layer.mask.numpy())
    reference = functional.col2im(out[None], hw) + layer.bias.detach().numpy()[None, :, None, None]
    np.testing.assert_allclose(layer(x).detach().numpy(), reference, atol=1e-10)
    dense = functional.expand_one_by_n(values, layer.mask.numpy())
    np.testing.assert_allclose(dense, functional.dense_weight_matrix(
        layer.masked_weight().detach().numpy(), hw)[0], atol=0)


def test_one_by_n_linear_forward_uses_the_mask() -> None:
    layer = OneByNLinear(8, 8, 2, 0.5)
    layer.prune_(0.5)
    x = torch.randn(3, 8)
    expected = x @ layer.masked_weight().T + layer.bias
    torch.testing.assert_close(layer(x), expected)
    hw = layer.hw_sim_layer("fc", (3, 8))
    assert hw.batch == 3 and hw.weight_density == pytest.approx(0.5)


def test_one_by_n_rejects_bad_n_and_sparsity() -> None:
    with pytest.raises(ConfigError, match="n"):
        OneByNLinear(8, 10, 4, 0.5)
    with pytest.raises(ConfigError, match="sparsity"):
        OneByNLinear(8, 8, 4, 1.0)
    with pytest.raises(ConfigError):
        cubic_sparsity_schedule(0.6, 0.1)


@pytest.mark.parametrize("make", [lambda: OneByNConv2d(6, 16, 3, 4, 0.5),
                                  lambda: NMLinear(16, 8, 2, 4)])
def test_dense_pass_sends_the_gradient_only_into_the_pruned_weights(make) -> None:
    """DCIL's refined gradients: a normal pass differentiates the kept weights, a dense pass
    multiplies the whole weight and differentiates only the pruned ones."""
    torch.manual_seed(0)
    layer = make()
    layer.prune_(layer.target_sparsity)
    pruned = layer._apply_mask(torch.ones_like(layer.weight)) == 0
    assert pruned.any() and (~pruned).any()
    x = torch.randn(2, 6, 5, 5) if isinstance(layer, OneByNConv2d) else torch.randn(3, 16)
    layer(x).square().sum().backward()
    sparse_grad = layer.weight.grad.clone()
    assert (sparse_grad[pruned] == 0).all() and (sparse_grad[~pruned] != 0).any()
    layer.weight.grad = None
    with dense_pass(layer):
        assert layer.in_dense_pass
        torch.testing.assert_close(layer.masked_weight(), layer.weight)
        layer(x).square().sum().backward()
    assert not layer.in_dense_pass
    dense_grad = layer.weight.grad
    assert (dense_grad[~pruned] == 0).all() and (dense_grad[pruned] != 0).any()


def test_keep_pruned_keeps_values_and_lets_a_grown_weight_back() -> None:
    layer = NMLinear(4, 1, 1, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 1.0, 0.5, 2.0]]))
    layer.prune_(0.5, keep_pruned=True)
    assert layer.mask.tolist() == [[True, False, False, True]]
    assert layer.weight.tolist() == [[3.0, 1.0, 0.5, 2.0]]  # pruned weights keep their values
    with torch.no_grad():
        layer.weight[0, 1] = 5.0  # a pruned weight grows past its kept neighbour
    layer.prune_(0.5, keep_pruned=True)
    assert layer.mask.tolist() == [[False, True, False, True]]
    layer.prune_(0.5)  # the default: pruned weights are zeroed and stay pruned
    assert layer.weight.tolist() == [[0.0, 5.0, 0.0, 2.0]]


def test_row_balanced_block_mask_keeps_the_same_count_in_every_row() -> None:
    torch.manual_seed(1)
    weight = torch.randn(16, 12, 3, 3)
    balanced = block_l1_mask(weight, 4, 0.75, balanced=True)
    assert balanced.sum(dim=1).tolist() == [3, 3, 3, 3]
    norms = weight.abs().reshape(4, 4, 12, 9).sum(dim=(1, 3))
    for row in range(4):  # the largest three of each row
        assert set(torch.topk(norms[row], 3).indices.tolist()) == set(
            balanced[row].nonzero().flatten().tolist())
    layer_wide = block_l1_mask(weight, 4, 0.75)
    assert int(layer_wide.sum()) == int(balanced.sum()) == 12
