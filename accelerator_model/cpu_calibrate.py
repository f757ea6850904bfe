"""Calibrate the CPU latency model on this machine: sample shapes, time the real kernels, fit
the coefficients, and score the fit on held-out shapes.

Shapes are drawn per kernel family (so every family gets the same number) from a grid of
values that covers DRL-sized layers (MinAtar's 10x10 inputs, 1-128 input channels, FC 8-4096
-> 1-1024) and larger ones (up to 56x56 maps, 256 channels), at inference batch sizes (1, an
agent acting in one environment, to 8), capped so one call lasts at most a few milliseconds.
The MinAtar reference agent's layers in every weight format are always part of the training
set.  Held-out shapes are drawn from the same grid
with another seed, and timed in the same interleaved run as the training shapes.

The additive model is fitted per family by non-negative least squares of ``latency = terms @
c`` with each row divided by its measured latency, i.e. minimising the sum of squared
*relative* errors, which is what the +-10 % score measures.  Then, per family, gradient-boosted
trees learn ``log(measured / additive)`` from the layer's shape descriptors (nn-Meter's
per-kernel regressors, here on top of a physical model): library quirks such as MKL's choice
of GEMM kernel or a working set at a cache boundary.  How many trees, how deep, or none at
all, is chosen per family by cross-validation on the training shapes (:class:`TreeGrid`);
the held-out shapes are only scored.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, ValidationError
from scipy.optimize import nnls

from a3cs_common.errors import ConfigError
from a3cs_common.io import atomic_write_text, load_mapping, save_figure
from a3cs_common.schema import FrozenModel
from accelerator_model.cpu import (
    DESCRIPTORS,
    FAMILIES,
    FAMILY_TERMS,
    TERMS,
    CalibrationSummary,
    CpuProfile,
    CpuSpec,
    KernelFamily,
    ResidualTrees,
    descriptors,
    detect_host,
    estimate_layers,
    kernel_family,
    work_terms,
)
from accelerator_model.cpu_kernels import KernelTimer, TimingMethod, make_kernel, summarize
from hw_sim.workload import Conv2d, Linear

# The grid the shapes are drawn from.
_IN_CHANNELS = (1, 2, 3, 4, 6, 7, 8, 10, 12, 16, 24, 32, 48, 64, 96, 128)
_OUT_CHANNELS = (4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256)
_GROUPED_CHANNELS = (8, 16, 32, 48, 64, 96, 128, 192, 256)
_MAP_SIZES = (3, 4, 5, 6, 8, 10, 12, 14, 16, 20, 24, 28, 40, 56)
_KERNELS = (1, 3, 3, 3, 5, 7)
_IN_FEATURES = (8, 16, 32, 64, 100, 128, 256, 400, 512, 1024, 1600, 2048, 4096)
_OUT_FEATURES = (1, 2, 3, 4, 6, 8, 16, 18, 32, 64, 128, 256, 512, 1024)
# Inference batches: an agent acting in one to eight environments at a time.
_BATCHES = (1, 1, 1, 1, 1, 2, 4, 8)
_NS = (2, 4, 8, 16)
_DENSITIES = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
_BLOCK_SIZES = (2, 4, 8, 16, 32)

ProgressFn = Callable[[int], None]

# A family's additive model has up to 14 terms; fewer shapes than that cannot be fitted.
_MIN_PER_FAMILY = 20

# Caps on one call's work, so that the whole grid times in minutes.
_MAX_DENSE_MACS = 20e6
_MAX_WEIGHT_WORDS = 2e6
_MAX_SPARSE_MACS = 1.5e6
_MAX_FFT_WORK = 6e6


def _pick(rng: np.random.Generator, values: Sequence) -> object:
    return values[int(rng.integers(len(values)))]


def _work_ok(layer: Conv2d | Linear) -> bool:
    fmt = layer.weight_format
    if layer.ifmap_words > 1_000_000 or layer.ofmap_words > 1_000_000:
        return False
    if fmt.type == "dense":
        return (layer.dense_macs <= _MAX_DENSE_MACS
                and layer.dense_weight_words <= _MAX_WEIGHT_WORDS)
    if fmt.type == "one_by_n":
        return layer.dense_macs * fmt.density <= _MAX_SPARSE_MACS
    b = fmt.block_size
    m, q, p = layer.gemm_m, layer.gemm_k // b, layer.gemm_n // b
    work = layer.groups * m * ((q + p) * b * np.log2(b) + (b // 2 + 1) * q * p * 4)
    return work <= _MAX_FFT_WORK


def _weight_format(family: KernelFamily, rng: np.random.Generator) -> dict:
    if family.startswith(("bsr", "csr")):
        n = 1 if family.startswith("csr") else int(_pick(rng, _NS))
        return {"type": "one_by_n", "n": n, "density": float(_pick(rng, _DENSITIES)),
                "seed": int(rng.integers(1 << 16))}
    if family.startswith("fft"):
        return {"type": "block_circulant", "block_size": int(_pick(rng, _BLOCK_SIZES))}
    return {"type": "dense"}


def _draw(family: KernelFamily, rng: np.random.Generator, name: str) -> Conv2d | Linear:
    fmt = _weight_format(family, rng)
    if family.endswith("linear"):
        return Linear.model_validate({
            "name": name, "in_features": int(_pick(rng, _IN_FEATURES)),
            "out_features": int(_pick(rng, _OUT_FEATURES)), "batch": int(_pick(rng, _BATCHES)),
            "weight_format": fmt})
    k = int(_pick(rng, _KERNELS))
    cin, cout, groups = int(_pick(rng, _IN_CHANNELS)), int(_pick(rng, _OUT_CHANNELS)), 1
    if family == "conv_depthwise":
        cin = cout = groups = int(_pick(rng, _GROUPED_CHANNELS))
    elif family == "conv_grouped":
        cin = int(_pick(rng, _GROUPED_CHANNELS))
        groups = int(_pick(rng, (2, 4, 8, 16, cin)))
        cout = cin * int(_pick(rng, (1, 2))) if groups == cin else int(_pick(rng, _GROUPED_CHANNELS))
    size = int(_pick(rng, _MAP_SIZES))
    return Conv2d.model_validate({
        "name": name, "in_channels": cin, "out_channels": cout, "in_height": size,
        "in_width": size, "kernel_size": k, "stride": int(_pick(rng, (1, 1, 2))),
        "padding": int(_pick(rng, (0, k // 2))), "groups": groups,
        "batch": int(_pick(rng, _BATCHES)), "weight_format": fmt})


def sample_layers(family: KernelFamily, count: int, rng: np.random.Generator,
                  prefix: str, threads: int = 1) -> list[Conv2d | Linear]:
    """``count`` distinct layers of ``family`` drawn from the grid (rejection sampling)."""
    layers: list[Conv2d | Linear] = []
    seen: set[str] = set()
    for _ in range(count * 1000):
        if len(layers) == count:
            break
        try:
            layer = _draw(family, rng, f"{prefix}{len(layers)}")
        except ValidationError:
            continue  # an invalid combination (kernel larger than the map, b not dividing C)
        key = repr(layer.model_dump(exclude={"name"}))
        if kernel_family(layer, threads) == family and _work_ok(layer) and key not in seen:
            seen.add(key)
            layers.append(layer)
    return layers


def reference_layers() -> list[Conv2d | Linear]:
    """The MinAtar reference agent's layers (conv 3x3 on 10x10, FC 1024 -> 128, heads) in
    the formats the co-search uses: dense, 1xN (N in 2, 4, 8 at 50 %) and block-circulant
    (b in 2, 4 for the conv, 4, 8, 16 for the FC)."""
    layers: list[Conv2d | Linear] = []
    for channels in (4, 7, 10):
        formats: list[dict] = [{"type": "dense"}]
        formats += [{"type": "one_by_n", "n": n, "density": 0.5} for n in (2, 4, 8)]
        formats += [{"type": "block_circulant", "block_size": b} for b in (2, 4)
                    if channels % b == 0]
        for i, fmt in enumerate(formats):
            layers.append(Conv2d(name=f"minatar_conv_c{channels}_{i}", in_channels=channels,
                                 out_channels=16, in_height=10, in_width=10, kernel_size=3,
                                 weight_format=fmt))
    fc_formats: list[dict] = [{"type": "dense"}]
    fc_formats += [{"type": "one_by_n", "n": n, "density": d} for n in (2, 4, 8)
                   for d in (0.25, 0.5)]
    fc_formats += [{"type": "block_circulant", "block_size": b} for b in (4, 8, 16)]
    for i, fmt in enumerate(fc_formats):
        layers.append(Linear(name=f"minatar_fc_{i}", in_features=1024, out_features=128,
                             weight_format=fmt))
    for actions in (1, 3, 4, 6, 18):
        layers.append(Linear(name=f"minatar_head_{actions}", in_features=128,
                             out_features=actions))
    return layers


def calibration_shapes(per_family: int, held_out_per_family: int, seed: int = 0,
                       threads: int = 1
                       ) -> tuple[list[Conv2d | Linear], list[Conv2d | Linear]]:
    """Training shapes (``per_family`` of each family plus :func:`reference_layers`) and
    held-out shapes (``held_out_per_family`` of each family, none equal to a training
    shape)."""
    train_rng, held_rng = np.random.default_rng([seed, 0]), np.random.default_rng([seed, 1])
    train = reference_layers()
    for family in FAMILIES:
        train += sample_layers(family, per_family, train_rng, f"{family}_", threads)
    seen = {repr(layer.model_dump(exclude={"name"})) for layer in train}
    held: list[Conv2d | Linear] = []
    for family in FAMILIES:
        candidates = sample_layers(family, 3 * held_out_per_family, held_rng,
                                   f"held_{family}_", threads)
        fresh = [c for c in candidates if repr(c.model_dump(exclude={"name"})) not in seen]
        held += fresh[:held_out_per_family]
    return train, held


# --------------------------------------------------------------------------------------------
# Fitting


def terms_matrix(layers: Sequence[Conv2d | Linear], spec: CpuSpec) -> np.ndarray:
    """``[len(layers), len(TERMS)]`` work terms."""
    return np.stack([work_terms(layer, spec) for layer in layers])


def _nnls_relative(x: np.ndarray, latency_s: np.ndarray) -> np.ndarray:
    """Non-negative ``c`` minimising ``sum((x @ c / latency - 1) ** 2)``: least squares on rows
    divided by the latency, i.e. on *relative* errors, what the +-10 % score counts."""
    a = x / latency_s[:, None]
    # Scale columns to unit maximum: the terms span 12 orders of magnitude.
    scale = a.max(axis=0)
    scale[scale == 0] = 1.0
    c, _ = nnls(a / scale, np.ones(len(latency_s)))
    return c / scale


def fit_coefficients(layers: Sequence[Conv2d | Linear], latency_s: np.ndarray,
                     spec: CpuSpec) -> dict[KernelFamily, dict[str, float]]:
    """Per-family non-negative coefficients of the additive model, minimising the sum of
    squared relative errors (:func:`_nnls_relative`).

    Raises:
        ValueError: a family has fewer measured layers than terms.
    """
    x = terms_matrix(layers, spec)
    families = np.array([kernel_family(layer, spec.threads) for layer in layers])
    out: dict[KernelFamily, dict[str, float]] = {}
    for family in FAMILIES:
        rows = families == family
        cols = [TERMS.index(t) for t in FAMILY_TERMS[family]]
        if rows.sum() < len(cols):
            raise ValueError(f"{family}: {rows.sum()} measured layers for {len(cols)} terms")
        c = _nnls_relative(x[np.ix_(rows, cols)], latency_s[rows])
        out[family] = {t: float(f"{v:.4g}") for t, v in zip(FAMILY_TERMS[family], c,
                                                              strict=True)}
    return out


@dataclass(frozen=True)
class TreeSettings:
    """Hyper-parameters of one family's residual trees (sklearn GradientBoostingRegressor,
    squared error, 80 % row subsampling).  ``trees == 0``: no trees, the additive model alone.
    """

    trees: int
    max_depth: int = 3
    min_samples_leaf: int = 3
    learning_rate: float = 0.1

    def label(self) -> str:
        if not self.trees:
            return "additive only"
        return (f"{self.trees} trees, depth {self.max_depth}, leaf >= {self.min_samples_leaf}, "
                f"rate {self.learning_rate:g}")

    def regressor(self, seed: int) -> Any:
        """An unfitted sklearn ``GradientBoostingRegressor`` with these settings."""
        from sklearn.ensemble import GradientBoostingRegressor

        return GradientBoostingRegressor(
            loss="squared_error", n_estimators=self.trees, max_depth=self.max_depth,
            learning_rate=self.learning_rate, subsample=0.8,
            min_samples_leaf=self.min_samples_leaf, random_state=seed)


@dataclass(frozen=True)
class TreeGrid:
    """The candidates that cross-validation chooses from, per family: no trees at all, and
    every depth and leaf size with every tree count (one fit per depth and leaf size, scored
    at each count through sklearn's staged predictions)."""

    depths: tuple[int, ...] = (2, 3, 4)
    min_leaves: tuple[int, ...] = (3, 10)
    counts: tuple[int, ...] = (25, 50, 100, 200, 400)
    learning_rate: float = 0.1
    folds: int = 5
    # Fewer training shapes than this: no trees (too few to fit and cross-validate them).
    min_rows: int = 50

    def candidates(self) -> list[TreeSettings]:
        """No trees first, then simpler before more complex (the order breaks exact ties)."""
        return [TreeSettings(0)] + [TreeSettings(count, depth, leaf, self.learning_rate)
                                    for depth in self.depths for leaf in self.min_leaves
                                    for count in self.counts]


TREE_GRID = TreeGrid()


@dataclass(frozen=True)
class FamilyModel:
    """How one family's residual was chosen.

    Attributes:
        settings: the chosen trees (``trees == 0``: none).
        cv_within_10pct: the chosen model's cross-validated share within +-10 % on the
            training shapes (additive model and trees refitted without each fold).
        cv_additive_within_10pct: the same for the additive model alone.
    """

    settings: TreeSettings
    cv_within_10pct: float
    cv_additive_within_10pct: float


def _family_arrays(layers: Sequence[Conv2d | Linear], spec: CpuSpec, family: KernelFamily
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The family's work terms ``[L, its terms]`` and shape descriptors without the
    additive prediction (filled in per fit) ``[L, len(DESCRIPTORS)]``."""
    cols = [TERMS.index(t) for t in FAMILY_TERMS[family]]
    terms = terms_matrix(layers, spec)[:, cols]
    x = np.stack([descriptors(layer, spec, 1.0) for layer in layers])
    return terms, x


_ANALYTIC = DESCRIPTORS.index("analytic_s")
# Squared log errors are compared to 1e-12 (a relative error of 1e-6): below that, noise.
_MSE_DECIMALS = 12


def _cv_family(terms: np.ndarray, x: np.ndarray, latency_s: np.ndarray, seed: int,
               grid: TreeGrid) -> FamilyModel:
    """Choose a family's trees by ``grid.folds``-fold cross-validation on its training
    shapes, refitting the additive model and the trees without each fold: the highest share
    within +-10 %, ties to the lower mean squared log error, then to the simpler candidate."""
    folds = np.random.default_rng([seed, 3]).permutation(len(latency_s)) % grid.folds
    candidates = grid.candidates()
    log_pred = np.zeros((len(candidates), len(latency_s)))
    for fold in range(grid.folds):
        fit, test = folds != fold, folds == fold
        analytic = terms @ _nnls_relative(terms[fit], latency_s[fit])
        xa = x.copy()
        xa[:, _ANALYTIC] = np.log(analytic)
        target = np.log(latency_s[fit] / analytic[fit])
        log_pred[:, test] = np.log(analytic[test])
        for row, settings in enumerate(candidates):
            if settings.trees != grid.counts[0]:
                continue  # one fit serves every count of this depth and leaf size
            most = TreeSettings(max(grid.counts), settings.max_depth,
                                settings.min_samples_leaf, grid.learning_rate)
            model = most.regressor(seed).fit(xa[fit], target)
            for count, residual in enumerate(model.staged_predict(xa[test]), start=1):
                if count in grid.counts:
                    log_pred[row + grid.counts.index(count), test] += residual
    error = log_pred - np.log(latency_s)
    within = np.mean(np.abs(np.exp(error) - 1) <= 0.1, axis=1)
    mse = np.mean(error**2, axis=1)
    # Errors that differ by floating-point noise alone (an exact additive fit, which trees
    # "improve" by 1e-30 on one BLAS and not on another) are ties: the simpler model wins.
    mse = np.round(mse, _MSE_DECIMALS)
    best = min(range(len(candidates)), key=lambda i: (-within[i], mse[i], i))
    return FamilyModel(candidates[best], float(within[best]), float(within[0]))


def fit_residuals(layers: Sequence[Conv2d | Linear], latency_s: np.ndarray,
                  analytic_s: np.ndarray, spec: CpuSpec, seed: int = 0,
                  settings: dict[KernelFamily, TreeSettings] | None = None,
                  grid: TreeGrid = TREE_GRID, workers: int | None = None
                  ) -> tuple[dict[KernelFamily, ResidualTrees], dict[KernelFamily, FamilyModel]]:
    """Per-family gradient-boosted trees on ``log(measured / analytic)`` over
    :func:`~accelerator_model.cpu.descriptors`, exported as node arrays (nn-Meter's
    kernel-level regressors, here correcting a physical model).

    Each family's hyper-parameters (tree count, depth, leaf size, or no trees at all) are
    ``settings[family]`` if given, else chosen from ``grid`` by cross-validation on these
    (training) shapes (:func:`_cv_family`); held-out shapes play no part.  The families'
    searches run in ``workers`` processes (default: one per CPU).

    Returns:
        The trees of the families that have them, and how each family's model was chosen
        (empty for families whose settings were given).
    """
    families = np.array([kernel_family(layer, spec.threads) for layer in layers])
    rows = {f: np.flatnonzero(families == f) for f in FAMILIES}
    fitted = [f for f in FAMILIES if len(rows[f]) >= grid.min_rows]
    given = settings or {}
    search = [f for f in fitted if f not in given]
    jobs = [(*_family_arrays([layers[i] for i in rows[f]], spec, f), latency_s[rows[f]], seed,
             grid) for f in search]
    workers = min(len(jobs), os.cpu_count() or 1) if workers is None else workers
    if workers > 1:
        # The families' searches are independent: one process per CPU (2 here) halves the
        # wait.  Spawned, not forked: a fork of a process whose torch / BLAS thread pools
        # are running can hang.
        with ProcessPoolExecutor(max_workers=workers,
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            chosen = dict(zip(search, pool.map(_cv_family, *zip(*jobs, strict=True)),
                              strict=True))
    else:
        chosen = {f: _cv_family(*job) for f, job in zip(search, jobs, strict=True)}
    trees: dict[KernelFamily, ResidualTrees] = {}
    for family in fitted:
        choice = given[family] if family in given else chosen[family].settings
        if choice.trees:
            pick = rows[family]
            x = np.stack([descriptors(layers[i], spec, analytic_s[i]) for i in pick])
            model = choice.regressor(seed).fit(x, np.log(latency_s[pick] / analytic_s[pick]))
            trees[family] = export_trees(model, x[:1])
    return trees, chosen


def export_trees(model: Any, probe: np.ndarray) -> ResidualTrees:
    """A fitted sklearn ``GradientBoostingRegressor`` as :class:`ResidualTrees` (node arrays;
    the constant initial prediction recovered on one ``probe`` row)."""
    estimators = model.estimators_[:, 0]
    rate = float(model.learning_rate)
    offset = model.predict(probe)[0] - rate * sum(e.predict(probe)[0] for e in estimators)
    nodes = [e.tree_ for e in estimators]
    leaf = [t.children_left == -1 for t in nodes]
    return ResidualTrees(
        offset=float(offset), learning_rate=rate,
        feature=tuple(tuple(int(v) for v in np.where(lf, -1, t.feature))
                      for t, lf in zip(nodes, leaf, strict=True)),
        threshold=tuple(tuple(float(v) for v in t.threshold) for t in nodes),
        left=tuple(tuple(int(v) for v in np.where(lf, 0, t.children_left))
                   for t, lf in zip(nodes, leaf, strict=True)),
        right=tuple(tuple(int(v) for v in np.where(lf, 0, t.children_right))
                    for t, lf in zip(nodes, leaf, strict=True)),
        value=tuple(tuple(float(v) for v in t.value[:, 0, 0]) for t in nodes),
    )


@dataclass(frozen=True)
class FitScore:
    """Prediction error on a set of layers.

    Attributes:
        within_10pct: share of layers with ``|pred / meas - 1| <= 0.1``.
        median_abs_error: median of ``|pred / meas - 1|``.
        per_family_within_10pct: the share per kernel family.
    """

    within_10pct: float
    median_abs_error: float
    per_family_within_10pct: dict[str, float]


def score(predicted_s: np.ndarray, measured_s: np.ndarray, families: Sequence[str]
          ) -> FitScore:
    """Compare predictions with measurements (both in seconds, same order)."""
    error = np.abs(np.asarray(predicted_s) / np.asarray(measured_s) - 1)
    fams = np.asarray(families)
    per = {f: float(np.mean(error[fams == f] <= 0.1)) for f in FAMILIES if np.any(fams == f)}
    return FitScore(float(np.mean(error <= 0.1)), float(np.median(error)), per)


# --------------------------------------------------------------------------------------------
# The calibration run


class CalibrationConfig(FrozenModel):
    """What `a3cs calibrate-cpu` measures and fits."""

    per_family: int = Field(default=400, ge=_MIN_PER_FAMILY,
                            description="training shapes drawn per kernel family")
    held_out_per_family: int = Field(default=80, ge=1, description="held-out shapes per family")
    seed: int = Field(default=0, ge=0, description="seed of the shapes and the timing order")
    threads: int = Field(default=1, ge=1, description="torch threads (scipy uses one)")
    rounds: int = Field(default=16, ge=1, description="interleaved timing rounds")
    samples: int = Field(default=4, ge=1, description="timed samples per kernel and round")
    settle_s: float = Field(default=TimingMethod.settle_s, ge=0, description="untimed calls "
                            "before a kernel's samples in each round (s); measurements "
                            "without it were distorted by the core's AVX-512 power states")
    residual: bool = Field(default=True, description="fit residual trees on the additive model")

    def timing(self) -> TimingMethod:
        return TimingMethod(threads=self.threads, rounds=self.rounds, samples=self.samples,
                            settle_s=self.settle_s, seed=self.seed)


@dataclass(frozen=True)
class Measured:
    """One timed shape.

    Attributes:
        layer: the layer.
        held_out: whether it is scored (True) or fitted (False).
        relative: its latency over the canary's in the same moments (dimensionless).
        latency_s: ``relative`` times the whole run's median canary (s).
        spread: interquartile range of its canary-corrected samples over their median.
        twin_ratio: a held-out shape's two measurements' ratio (1.0 for training shapes).
    """

    layer: Conv2d | Linear
    held_out: bool
    relative: float
    latency_s: float
    spread: float
    twin_ratio: float


@dataclass(frozen=True)
class CalibrationResult:
    """A finished calibration.

    Attributes:
        profile: the fitted profile (spec, coefficients, residual trees, summary).
        measured: every timed shape.
        predicted_s: the profile's prediction for each, in the same order (s).
        analytic_s: the additive model's prediction for each (s).
        held_out: score of the full model on the held-out shapes.
        analytic_held_out: score of the additive model alone on them.
        train: score of the full model on the training shapes.
        repeatability_within_10pct: share of held-out shapes whose two measurements agree
            within +-10 %.
    """

    profile: CpuProfile
    measured: list[Measured]
    predicted_s: np.ndarray
    analytic_s: np.ndarray
    held_out: FitScore
    analytic_held_out: FitScore
    train: FitScore
    repeatability_within_10pct: float


def _measure_memory_bandwidth_gbs() -> float:
    """Copy bandwidth of a 256 MiB buffer (read + write bytes over time), best of 3, GB/s."""
    import time

    src = np.ones(64 * 1024 * 1024, dtype=np.float32)
    dst = np.empty_like(src)
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.nbytes / best / 1e9


def _check_state(data: dict, path: Path, field: str, kernels: int | None = None) -> None:
    """A measurements file's rounds and call counts, checked before anything uses them: each
    round one positive finite median and canary per kernel (``kernels`` when known)."""
    def bad(what: str) -> ConfigError:
        return ConfigError(field, str(path), f"a measurements file written by a3cs "
                           f"calibrate-cpu (its {what} is damaged)")

    rounds, calls = data.get("rounds"), data.get("calls")
    if not isinstance(rounds, list):
        raise bad("rounds list")
    widths = set()
    for entry in rounds:
        if not isinstance(entry, dict):
            raise bad("rounds list")
        for key in ("median_s", "canary_s"):
            values = entry.get(key)
            if not isinstance(values, list) or not all(
                    isinstance(v, int | float) and math.isfinite(v) and v > 0 for v in values):
                raise bad(f"rounds' {key}")
            widths.add(len(values))
    if calls is not None:
        if not isinstance(calls, list) or not all(
                isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in calls):
            raise bad("calls list")
        widths.add(len(calls))
    if len(widths) > 1 or (kernels is not None and widths and widths != {kernels}):
        raise bad("kernel count")


def _load_state(path: Path, config: CalibrationConfig) -> dict:
    data = load_mapping(path, field="--resume")
    _check_state(data, path, "--resume")
    # Whether residual trees are fitted does not change what is measured.
    saved = dict(data.get("config") or {}, residual=config.residual)
    if saved != config.model_dump():
        raise ConfigError("--resume", str(path), "a measurements file of a run with the same "
                          "options (these differ: start afresh without --resume)")
    return data


def _digits(values: Sequence[float]) -> list[float]:
    """Five significant digits: the timings' noise is far above that, the file far smaller."""
    return [float(f"{v:.5g}") for v in values]


def measure(config: CalibrationConfig, state_path: Path, *, resume: bool = False,
            progress: ProgressFn | None = None) -> tuple[list[Measured], dict]:
    """Draw the shapes, time their real kernels round by round, and save the measurements to
    ``state_path`` (JSON, atomically, after every round).

    Every round visits every kernel (:class:`~accelerator_model.cpu_kernels.KernelTimer`), so
    each kernel's rounds spread over the whole run and a slow spell of the machine, which can
    last minutes, hits all kernels alike rather than the ones timed during it.

    Every held-out shape is timed twice, as two kernels with different weights and buffers in
    the same run: its measured latency is the geometric mean of the two, and how often the
    two agree within +-10 % (:attr:`Measured.twin_ratio`) is the measurement's own
    repeatability, the ceiling of any model's score.

    Returns:
        The measurements and the saved state (config, spec, calls per sample, and per round
        each kernel's median sample and canary).
    """
    train, held = calibration_shapes(config.per_family, config.held_out_per_family,
                                     config.seed, config.threads)
    layers = train + held
    # Kernel j < len(layers) times layers[j]; kernel len(layers) + h is held[h]'s twin.
    if resume and state_path.is_file():
        state = _load_state(state_path, config)
    else:
        spec = detect_host(_measure_memory_bandwidth_gbs())
        state = {"config": config.model_dump(),
                 "spec": spec.model_copy(update={"threads": config.threads}).model_dump(),
                 "load_average": list(os.getloadavg()), "calls": None, "rounds": []}
    kernels = len(layers) + len(held)
    if resume:
        _check_state(state, state_path, "--resume", kernels)
    method = config.timing()
    if len(state["rounds"]) < config.rounds:
        built = [make_kernel(layer, seed=config.seed) for layer in layers]
        built += [make_kernel(layer, seed=config.seed + 1) for layer in held]
        if progress is not None and state["calls"] is not None:
            progress(kernels * (1 + len(state["rounds"])))  # warm-up and rounds already done
        timer = KernelTimer([k.run for k in built], method, calls=state["calls"],
                            progress=progress)
        state["calls"] = timer.calls
        for r in range(len(state["rounds"]), config.rounds):
            median_s, canary_s = timer.round(seed=config.seed * 1000 + r)
            state["rounds"].append({"median_s": _digits(median_s),
                                    "canary_s": _digits(canary_s)})
            atomic_write_text(state_path, json.dumps(state) + "\n")
    run = summarize(np.array([r["median_s"] for r in state["rounds"]]).T,
                    np.array([r["canary_s"] for r in state["rounds"]]).T, state["calls"])
    relative = np.array([t.relative for t in run.timings])
    measured = []
    for j, layer in enumerate(layers):
        held_out = j >= len(train)
        twin = relative[len(layers) + j - len(train)] if held_out else relative[j]
        rel = math.sqrt(relative[j] * twin)
        measured.append(Measured(layer, held_out, rel, rel * run.canary_median_s,
                                 run.timings[j].spread, float(relative[j] / twin)))
    return measured, state


def fit_profile(measured: Sequence[Measured], spec: CpuSpec, config: CalibrationConfig,
                summary: dict) -> CalibrationResult:
    """Fit the additive coefficients (and residual trees) on the training shapes and score
    the held-out ones.  ``summary`` carries the run's conditions into the profile."""
    layers = [m.layer for m in measured]
    latency = np.array([m.latency_s for m in measured])
    is_held = np.array([m.held_out for m in measured])
    train = ~is_held
    train_layers = [layer for layer, t in zip(layers, train, strict=True) if t]
    coefficients = fit_coefficients(train_layers, latency[train], spec)
    profile = CpuProfile(spec=spec, coefficients=coefficients)
    analytic = np.array([e.analytic_s for e in estimate_layers(layers, profile)])
    chosen: dict[KernelFamily, FamilyModel] = {}
    if config.residual:
        residuals, chosen = fit_residuals(train_layers, latency[train], analytic[train], spec,
                                          config.seed)
        profile = CpuProfile(spec=spec, coefficients=coefficients, residuals=residuals)
    predicted = np.array([e.latency_s for e in estimate_layers(layers, profile)])
    families = [kernel_family(layer, spec.threads) for layer in layers]
    held_fams = [f for f, h in zip(families, is_held, strict=True) if h]
    held = score(predicted[is_held], latency[is_held], held_fams)
    analytic_held = score(analytic[is_held], latency[is_held], held_fams)
    train_score = score(predicted[train], latency[train],
                        [f for f, h in zip(families, is_held, strict=True) if not h])
    profile = profile.model_copy(update={"calibration": CalibrationSummary(
        **summary, train_shapes=int(train.sum()), held_out_shapes=int(is_held.sum()),
        held_out_within_10pct=held.within_10pct,
        held_out_median_abs_error=held.median_abs_error,
        repeatability_within_10pct=float(np.mean(np.abs(
            np.array([m.twin_ratio for m in measured if m.held_out]) - 1) <= 0.1)),
        analytic_held_out_within_10pct=analytic_held.within_10pct,
        per_family_within_10pct=held.per_family_within_10pct,
        per_family_model={f: c.settings.label() for f, c in chosen.items()},
        per_family_cv_within_10pct={f: c.cv_within_10pct for f, c in chosen.items()},
    )})
    twins = np.array([m.twin_ratio for m in measured if m.held_out])
    return CalibrationResult(profile, list(measured), predicted, analytic, held,
                             analytic_held, train_score,
                             float(np.mean(np.abs(twins - 1) <= 0.1)))


def calibrate(config: CalibrationConfig, state_path: Path, *, resume: bool = False,
              progress: ProgressFn | None = None) -> CalibrationResult:
    """Measure (or resume measuring) and fit: the whole of `a3cs calibrate-cpu`."""
    import datetime

    import scipy
    import torch

    measured, state = measure(config, state_path, resume=resume, progress=progress)
    spec = CpuSpec.model_validate(state["spec"])
    method = config.timing()
    summary = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": spec.name, "torch_version": torch.__version__,
        "scipy_version": scipy.__version__,
        "load_average": tuple(state["load_average"]),
        "timing": {"threads": method.threads, "rounds": method.rounds,
                   "samples": method.samples, "min_sample_s": method.min_sample_s,
                   "settle_s": method.settle_s,
                   "clock": method.clock, "statistic": "canary-corrected median"},
        "canary_median_s": float(np.median([r["canary_s"] for r in state["rounds"]])),
    }
    return fit_profile(measured, spec, config, summary)


def progress_total(config: CalibrationConfig) -> int:
    """Progress steps of a calibration (kernels times rounds plus warm-ups), for a bar."""
    train, held = calibration_shapes(config.per_family, config.held_out_per_family,
                                     config.seed, config.threads)
    return (len(train) + 2 * len(held)) * (config.rounds + 1)


def refit(state_path: Path, *, residual: bool = True) -> CalibrationResult:
    """Fit again from a finished measurements file (no timing).

    Raises:
        ConfigError: the file is missing, unreadable, or its measurements are unfinished.
    """
    data = load_mapping(state_path, field="--refit")
    _check_state(data, state_path, "--refit")
    try:
        config = CalibrationConfig.model_validate(data["config"])
        rounds_done = len(data["rounds"])
    except (KeyError, TypeError, ValidationError):
        raise ConfigError("--refit", str(state_path), "a measurements file written by "
                          "a3cs calibrate-cpu") from None
    if rounds_done < config.rounds:
        raise ConfigError("--refit", str(state_path), f"finished measurements (this file has "
                          f"{rounds_done} of {config.rounds} rounds: continue it with --resume)")
    return calibrate(config.model_copy(update={"residual": residual}), state_path, resume=True)


def write_heldout_csv(result: CalibrationResult, path: Path) -> Path:
    """Held-out shapes with measured, predicted and additive latencies (us), atomically."""
    threads = result.profile.spec.threads
    lines = ["layer,family,measured_us,predicted_us,additive_us,error,twin_ratio,spread"]
    for m, pred, add in zip(result.measured, result.predicted_s, result.analytic_s,
                            strict=True):
        if m.held_out:
            desc = json.dumps(m.layer.model_dump(mode="json", exclude={"name"}),
                              separators=(",", ":")).replace('"', "'")
            lines.append(f'"{desc}",{kernel_family(m.layer, threads)},{m.latency_s * 1e6:.3f},'
                         f"{pred * 1e6:.3f},{add * 1e6:.3f},{pred / m.latency_s - 1:+.4f},"
                         f"{m.twin_ratio:.4f},{m.spread:.3f}")
    return atomic_write_text(path, "\n".join(lines) + "\n")


def write_fit_plot(result: CalibrationResult, stem: Path) -> list[Path]:
    """Predicted against measured latency of the held-out shapes, per family (log-log, with
    the +-10 % band), as ``stem.png`` and ``stem.svg``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threads = result.profile.spec.threads
    held = [i for i, m in enumerate(result.measured) if m.held_out]
    families = [kernel_family(result.measured[i].layer, threads) for i in held]
    meas = np.array([result.measured[i].latency_s for i in held]) * 1e6
    pred = result.predicted_s[held] * 1e6
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    markers = "os^vD<>pPX*"
    for k, family in enumerate(FAMILIES):
        pick = [j for j, f in enumerate(families) if f == family]
        if pick:
            ax.scatter(meas[pick], pred[pick], s=14, marker=markers[k], label=family, alpha=0.8)
    lo, hi = meas.min() / 1.5, meas.max() * 1.5
    grid = np.array([lo, hi])
    ax.plot(grid, grid, "k-", lw=0.8)
    ax.fill_between(grid, grid * 0.9, grid * 1.1, color="0.85", zorder=0, label="+-10 %")
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi),
           xlabel="measured latency (us)", ylabel="predicted latency (us)",
           title=f"held-out shapes: {result.held_out.within_10pct:.1%} within +-10 %")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return save_figure(fig, stem)
