"""What each engine computes, in numpy: the functional models behind the timing models.

Conventions shared with the trainable layers in :mod:`nas`:

* im2col orders the reduction axis tap-major, channel fastest: ``k = tap * C_g + c`` with
  ``tap = kh_index * kernel_w + kw_index`` (SCALE-Sim's order).
* A circulant block defined by vector ``w`` (length ``b``) is the matrix
  ``C[r, s] = w[(r - s) mod b]``, so ``C @ x`` is the circular convolution ``w * x`` and
  equals ``irfft(rfft(w) * rfft(x))``.  Block-circulant weights are a ``[p, q, b]`` array of
  defining vectors; the blocks run along channels within each tap.
* 1xN weights are ``[P, C_g, n, taps]`` values with a ``[P, C_g]`` block mask: block
  ``(r, c)`` holds output channels ``r*n .. r*n+n-1`` of input channel ``c`` at every tap.
"""

from __future__ import annotations

import numpy as np

from hw_sim.workload import Conv2d, Linear


def im2col(x: np.ndarray, layer: Conv2d | Linear) -> np.ndarray:
    """Unfold an input for the layer's GEMMs.

    Args:
        x: ``[batch, in_channels, in_height, in_width]`` (conv) or ``[batch, in_features]``.
        layer: the layer.

    Returns:
        ``[groups, M, K]`` with ``M = batch * out_h * out_w`` and ``K = taps * C / groups``.
    """
    if isinstance(layer, Linear):
        return x.reshape(1, x.shape[0], -1)
    kh, kw = layer.kernel_size
    sh, sw = layer.stride
    ph, pw = layer.padding
    oh, ow = layer.out_height, layer.out_width
    # ceil_mode windows may run past the padded input: pad the far side with zeros too.
    need_h = (oh - 1) * sh + kh
    need_w = (ow - 1) * sw + kw
    padded = np.zeros((x.shape[0], x.shape[1], max(need_h, x.shape[2] + 2 * ph),
                       max(need_w, x.shape[3] + 2 * pw)), dtype=x.dtype)
    padded[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]] = x
    taps = []
    for i in range(kh):
        for j in range(kw):
            patch = padded[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]  # [B, C, oh, ow]
            taps.append(patch.transpose(0, 2, 3, 1).reshape(-1, x.shape[1]))  # [M, C]
    cols = np.stack(taps, axis=1)  # [M, taps, C]
    g = layer.groups
    cg = layer.in_channels // g
    return np.stack([cols[:, :, i * cg:(i + 1) * cg].reshape(cols.shape[0], -1)
                     for i in range(g)])


def dense_weight_matrix(weight: np.ndarray, layer: Conv2d | Linear) -> np.ndarray:
    """A torch-layout weight (``[out, C_g, kh, kw]`` or ``[out, in]``) as ``[groups, N, K]``
    in im2col order."""
    g = layer.groups
    n = layer.out_channels // g
    if weight.ndim == 2:
        return weight.reshape(1, n, -1)
    w = weight.transpose(0, 2, 3, 1).reshape(weight.shape[0], -1)  # [out, taps*C_g]
    return w.reshape(g, n, -1)


def expand_circulant(vectors: np.ndarray) -> np.ndarray:
    """``[p, q, b]`` defining vectors -> the dense ``[p*b, q*b]`` block-circulant matrix."""
    p, q, b = vectors.shape
    r = np.arange(b)
    index = (r[:, None] - r[None, :]) % b  # C[r, s] = w[(r - s) mod b]
    blocks = vectors[:, :, index]  # [p, q, b, b]
    return blocks.transpose(0, 2, 1, 3).reshape(p * b, q * b)


def circulant_gemm(cols: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """``[M, q*b] x`` block-circulant ``[p, q, b]`` weights -> ``[M, p*b]``, via FFTs:
    ``q`` input FFTs and ``p`` output IFFTs per row, ``(b/2+1) p q`` complex MACs between."""
    p, q, b = vectors.shape
    x_spec = np.fft.rfft(cols.reshape(cols.shape[0], q, b), axis=-1)  # [M, q, bins]
    w_spec = np.fft.rfft(vectors, axis=-1)  # [p, q, bins], precomputed in hardware
    y_spec = np.einsum("mqf,pqf->mpf", x_spec, w_spec)
    return np.fft.irfft(y_spec, n=b, axis=-1).reshape(cols.shape[0], p * b)


def expand_one_by_n(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``[P, C_g, n, taps]`` block values and ``[P, C_g]`` mask -> dense ``[P*n, taps*C_g]``
    (im2col order), zero where blocks are pruned."""
    p, cg, n, taps = values.shape
    kept = values * mask[:, :, None, None]
    return kept.transpose(0, 2, 3, 1).reshape(p * n, taps * cg)


def one_by_n_gemm(cols: np.ndarray, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``[M, taps*C_g]`` x 1xN weights -> ``[M, P*n]``, walking only the kept blocks (BSR):
    each kept block multiplies one input channel's activations by ``n`` weights per tap."""
    p, cg, n, taps = values.shape
    x = cols.reshape(cols.shape[0], taps, cg)
    out = np.zeros((cols.shape[0], p, n), dtype=np.result_type(cols, values))
    rows, channels = np.nonzero(mask)
    for r, c in zip(rows, channels, strict=True):
        out[:, r, :] += x[:, :, c] @ values[r, c].T  # [M, taps] @ [taps, n]
    return out.reshape(cols.shape[0], p * n)


def col2im(out: np.ndarray, layer: Conv2d | Linear) -> np.ndarray:
    """``[groups, M, N]`` GEMM outputs -> ``[batch, out_channels, out_h, out_w]`` (or
    ``[batch, out_features]``)."""
    g, _, n = out.shape
    if isinstance(layer, Linear):
        return out[0]
    batch = layer.batch
    y = out.transpose(1, 0, 2).reshape(batch, layer.out_height, layer.out_width, g * n)
    return y.transpose(0, 3, 1, 2)
