"""Pareto plots of runs (matplotlib, Agg backend, PNG and SVG)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from a3cs.pareto import hypervolume_2d, non_dominated, normalised_reference, oriented
from a3cs.results import RunResult, read_results
from a3cs_common.errors import ConfigError
from a3cs_common.io import save_figure

_AXIS_LABEL = {"fps": "inferences per second (FPS, higher is better)",
               "latency": "latency per inference [s] (lower is better)",
               "energy": "energy per inference [pJ] (lower is better)"}


@dataclass(frozen=True)
class MethodStats:
    """One method's runs on one figure's normalised scale.

    ``hypervolume`` is that of the front pooled over all its runs, which rewards the luckiest
    seed and grows with the number of seeds; ``seed_hypervolume_mean``/``_std`` are over the
    method's seeds, each seed's runs taken alone: what one search run is expected to give.
    """

    runs: int
    front_size: int
    hypervolume: float
    seed_hypervolume_mean: float
    seed_hypervolume_std: float


@dataclass(frozen=True)
class ParetoFigure:
    png: Path
    svg: Path
    methods: dict[str, MethodStats]


def collect_runs(paths: list[Path], *,
                 on_bad: Callable[[ConfigError], None] | None = None) -> list[RunResult]:
    """Result rows from run directories, or from folders whose subfolders are run directories.

    Args:
        paths: run directories, or folders of run directories.
        on_bad: called with the error of a run whose results.json is damaged, which is then
            skipped; None: the error is raised.

    Raises:
        ConfigError: a path is not a folder or holds no results.json at all; a damaged
            results.json (without ``on_bad``); no rows left.
    """
    rows: list[RunResult] = []
    for path in paths:
        if not path.is_dir():
            raise ConfigError("RUN_DIR", str(path), "an existing run directory")
        run_dirs = [path] if (path / "results.json").is_file() else sorted(
            p.parent for p in path.glob("*/results.json"))
        if not run_dirs:
            raise ConfigError("RUN_DIR", str(path), "a run directory containing results.json, "
                              "or a folder of such run directories")
        for run_dir in run_dirs:
            try:
                rows.extend(read_results(run_dir))
            except ConfigError as error:
                if on_bad is None:
                    raise
                on_bad(error)
    if not rows:
        raise ConfigError("RUN_DIR", " ".join(map(str, paths)), "at least one run with a "
                          "readable results.json")
    return rows


def plot_pareto(rows: list[RunResult], metric: str, stem: Path,
                title: str | None = None) -> ParetoFigure:
    """Draw score against ``metric`` per method; return the files and per-method stats."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    raw = np.array([[row.metric(metric), row.score_mean] for row in rows], dtype=float)
    scaled, reference, _ = normalised_reference(oriented(raw, metric))
    methods = sorted({row.name for row in rows})
    stats: dict[str, MethodStats] = {}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = plt.get_cmap("tab10")
    for k, method in enumerate(methods):
        idx = [i for i, row in enumerate(rows) if row.name == method]
        pts = raw[idx]
        err = np.array([rows[i].score_std for i in idx])
        front = non_dominated(oriented(pts, metric))
        per_seed = [hypervolume_2d(scaled[[i for i in idx if rows[i].seed == seed]], reference)
                    for seed in sorted({rows[i].seed for i in idx})]
        stats[method] = MethodStats(len(idx), int(front.sum()),
                                    hypervolume_2d(scaled[idx], reference),
                                    float(np.mean(per_seed)),
                                    float(np.std(per_seed, ddof=1)) if len(per_seed) > 1
                                    else 0.0)
        color = colors(k % 10)
        ax.errorbar(pts[:, 0], pts[:, 1], yerr=err, fmt="o", color=color, alpha=0.45,
                    markersize=5, capsize=2, label=None)
        ordered = pts[front][np.argsort(pts[front][:, 0])]
        # the boundary of the region the front dominates: a staircase
        ax.plot(ordered[:, 0], ordered[:, 1], "-", drawstyle="steps-pre" if
                metric == "fps" else "steps-post", color=color, alpha=0.8)
        ax.scatter(pts[front, 0], pts[front, 1], s=60, color=color, edgecolor="black",
                   zorder=3, label=f"{method} (HV {stats[method].hypervolume:.3f})")
    if metric in ("latency", "energy") or raw[:, 0].max() / max(raw[:, 0].min(), 1e-30) > 20:
        ax.set_xscale("log")
    ax.set_xlabel(_AXIS_LABEL[metric])
    ax.set_ylabel("test score (mean return)")
    ax.set_title(title or "Test score vs hardware efficiency (outlined: non-dominated)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png, svg = save_figure(fig, stem)
    return ParetoFigure(png, svg, stats)
