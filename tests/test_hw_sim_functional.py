"""Functional models: what each engine computes equals the dense product of the expanded
circulant / masked weight matrix, and im2col matches torch's convolution."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hw_sim.functional import (
    circulant_gemm,
    col2im,
    dense_weight_matrix,
    expand_circulant,
    expand_one_by_n,
    im2col,
    one_by_n_gemm,
)
from hw_sim.workload import Conv2d, Linear


@settings(max_examples=40, deadline=None)
@given(p=st.integers(1, 4), q=st.integers(1, 4), b=st.sampled_from([2, 4, 8, 16]),
       m=st.integers(1, 6), seed=st.integers(0, 1000))
def test_circulant_fft_product_equals_expanded_matrix(p, q, b, m, seed):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(p, q, b))
    cols = rng.normal(size=(m, q * b))
    dense = expand_circulant(vectors)
    assert dense.shape == (p * b, q * b)
    np.testing.assert_allclose(circulant_gemm(cols, vectors), cols @ dense.T, atol=1e-10)


def test_circulant_block_structure():
    vectors = np.arange(4, dtype=float).reshape(1, 1, 4)
    expected = np.array([[0, 3, 2, 1], [1, 0, 3, 2], [2, 1, 0, 3], [3, 2, 1, 0]], dtype=float)
    np.testing.assert_array_equal(expand_circulant(vectors), expected)


@settings(max_examples=40, deadline=None)
@given(p=st.integers(1, 4), cg=st.integers(1, 5), n=st.sampled_from([1, 2, 4, 8]),
       taps=st.sampled_from([1, 4, 9]), m=st.integers(1, 6), seed=st.integers(0, 1000))
def test_one_by_n_bsr_product_equals_masked_dense(p, cg, n, taps, m, seed):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(p, cg, n, taps))
    mask = rng.random((p, cg)) < 0.5
    cols = rng.normal(size=(m, taps * cg))
    dense = expand_one_by_n(values, mask)
    np.testing.assert_allclose(one_by_n_gemm(cols, values, mask), cols @ dense.T, atol=1e-10)
    # a pruned block is an all-zero n x taps patch of the dense matrix
    for r, c in zip(*np.nonzero(~mask), strict=True):
        assert not dense[r * n:(r + 1) * n, c::cg].any()


@pytest.mark.parametrize(("h", "k", "s", "p", "g"), [
    (10, 3, 1, 0, 1), (7, 3, 2, 1, 2), (6, 2, 2, 0, 4), (5, 1, 1, 0, 1)])
def test_im2col_gemm_equals_torch_conv(h, k, s, p, g):
    rng = np.random.default_rng(0)
    layer = Conv2d(name="c", in_channels=4, out_channels=8, in_height=h, in_width=h,
                   kernel_size=k, stride=s, padding=p, groups=g, batch=2)
    x = rng.normal(size=(2, 4, h, h))
    w = rng.normal(size=(8, 4 // g, k, k))
    cols = im2col(x, layer)
    assert cols.shape == (g, layer.gemm_m, layer.gemm_k)
    y = col2im(np.einsum("gmk,gnk->gmn", cols, dense_weight_matrix(w, layer)), layer)
    ref = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), stride=s, padding=p,
                                     groups=g).numpy()
    np.testing.assert_allclose(y, ref, atol=1e-10)


def test_block_circulant_conv_layer_via_im2col():
    # Blocks run along channels within each tap: the im2col row of one pixel is [tap][channel].
    rng = np.random.default_rng(1)
    layer = Conv2d(name="c", in_channels=8, out_channels=4, in_height=5, in_width=5,
                   kernel_size=3, weight_format={"type": "block_circulant", "block_size": 4})
    vectors = rng.normal(size=(1, 9 * 2, 4))  # p = 4/4, q = taps * 8/4
    cols = im2col(rng.normal(size=(1, 8, 5, 5)), layer)[0]
    np.testing.assert_allclose(circulant_gemm(cols, vectors),
                               cols @ expand_circulant(vectors).T, atol=1e-10)


def test_linear_im2col_is_identity():
    layer = Linear(name="l", in_features=6, out_features=2, batch=3)
    x = np.arange(18.0).reshape(3, 6)
    np.testing.assert_array_equal(im2col(x, layer)[0], x)
