"""Pareto fronts of test score against hardware efficiency, and their hypervolume.

Both objectives are turned into "larger is better" (latency and energy are negated), so a
point dominates another when it is at least as good in both and better in one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Efficiency metrics and whether larger is better.
LARGER_IS_BETTER = {"fps": True, "latency": False, "energy": False}


def oriented(points: np.ndarray, metric: str) -> np.ndarray:
    """``[n, 2]`` (efficiency, score) -> both columns "larger is better"."""
    out = np.asarray(points, dtype=float).copy()
    if not LARGER_IS_BETTER[metric]:
        out[:, 0] = -out[:, 0]
    return out


def non_dominated(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the points no other point dominates (maximising both columns).

    Args:
        points: ``[n, 2]``.
    """
    pts = np.asarray(points, dtype=float)
    mask = np.ones(len(pts), dtype=bool)
    for i, p in enumerate(pts):
        better_or_equal = np.all(pts >= p, axis=1)
        strictly = np.any(pts > p, axis=1)
        if np.any(better_or_equal & strictly):
            mask[i] = False
    return mask


def hypervolume_2d(points: np.ndarray, reference: Sequence[float]) -> float:
    """Area dominated by ``points`` (maximising both columns) above ``reference``.

    Points not better than the reference in both objectives contribute nothing.
    """
    ref = np.asarray(reference, dtype=float)
    pts = np.asarray(points, dtype=float)
    pts = pts[np.all(pts > ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    front = pts[non_dominated(pts)]
    front = front[np.argsort(-front[:, 0])]  # efficiency descending -> score ascending
    area = 0.0
    previous_score = ref[1]
    for efficiency, score in front:
        area += (efficiency - ref[0]) * (score - previous_score)
        previous_score = score
    return float(area)


def normalised_reference(all_points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scale every oriented point to [0, 1] per objective over all methods, with the
    reference point at the worst value of each objective minus 10 % of its range.

    Returns:
        ``(scaled points, reference point, (low, high) per objective)``; hypervolumes of
        different methods computed on the same scale are comparable (at most 1.21).
    """
    pts = np.asarray(all_points, dtype=float)
    low, high = pts.min(axis=0), pts.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    scaled = (pts - low) / span
    return scaled, np.array([-0.1, -0.1]), np.stack([low, high])
