"""A sweep's summary: mean +- std per method (or variant) and game, each against the
hand-designed network (difference, Welch's t-test), Pareto plots per game.

Written at the end of ``a3cs sweep`` and by ``a3cs plot SWEEP_DIR``: ``summary.md``,
``summary.csv``, ``summary.json`` and ``pareto_<game>.png/.svg`` in the sweep directory.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
import warnings
from dataclasses import dataclass
from pathlib import Path

from a3cs.plotting import collect_runs, plot_pareto
from a3cs.results import RunResult
from a3cs_common.io import atomic_write_text


@dataclass(frozen=True)
class SummaryRow:
    """One method (or variant) on one game, over its seeds."""

    env_id: str
    method: str
    runs: int
    score_mean: float
    score_std: float  # over the runs' mean scores
    fps_mean: float
    fps_std: float
    latency_us: float
    energy_uj: float | None
    params: float
    wall_time_min: float  # mean over the runs: search, retraining, evaluation, measurement
    fps_vs_hand_designed: float | None
    score_vs_hand_designed: float | None  # mean score minus hand_designed's on this game
    welch_t: float | None  # Welch's t of the runs' scores against hand_designed's
    welch_p: float | None  # its two-sided p (None: fewer than 2 runs on a side, no spread)
    hypervolume: float  # of the front pooled over the seeds
    seed_hypervolume_mean: float  # over the seeds, each seed's front alone
    seed_hypervolume_std: float
    goal: str  # issue 21's goal against hand_designed on this game, or "-"


@dataclass(frozen=True)
class SweepSummary:
    rows: list[SummaryRow]
    markdown: Path
    csv: Path
    json: Path
    plots: list[Path]


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


#: The co-search's goal (issue 21): at least the hand-designed mean score minus its std (over
#: seeds), at this multiple of its FPS or more.
GOAL_SPEEDUP = 2.0


def _goal(score: float, fps: float, hand_score: float, hand_std: float, hand_fps: float) -> str:
    """Whether a method meets the goal against hand_designed, else by how much it misses."""
    misses = []
    if score < hand_score - hand_std:
        misses.append(f"score {score - (hand_score - hand_std):+.2f}")
    if fps < GOAL_SPEEDUP * hand_fps:
        misses.append(f"FPS {fps / hand_fps:.2f}x")
    return "met" if not misses else "missed: " + ", ".join(misses)


def _welch(scores: list[float], hand_scores: list[float]) -> tuple[float | None, float | None]:
    """Welch's t-test (unequal variances) of ``scores`` against ``hand_scores``: (t, two-sided
    p), or (None, None) where it is undefined (fewer than 2 runs on a side, or no spread on
    either)."""
    from scipy.stats import ttest_ind

    if len(scores) < 2 or len(hand_scores) < 2 or \
            statistics.stdev(scores) + statistics.stdev(hand_scores) == 0.0:
        return None, None
    with warnings.catch_warnings():  # scipy's "precision loss" when one side's seeds tie
        warnings.simplefilter("ignore", RuntimeWarning)
        result = ttest_ind(scores, hand_scores, equal_var=False)
    return float(result.statistic), float(result.pvalue)


def _versus_hand(row: SummaryRow) -> str:
    if row.score_vs_hand_designed is None:
        return "-"
    test = (f" ({row.welch_t:+.2f}, {row.welch_p:.2f})" if row.welch_t is not None
            and row.welch_p is not None else "")
    return f"{row.score_vs_hand_designed:+.2f}{test}"


def summarise(out: Path, sources: list[Path] | None = None) -> SweepSummary:
    """Summarise every finished run under ``sources`` (default: ``out``) into ``out``.

    Raises:
        ConfigError: no run under the sources has results.
    """
    runs = collect_runs(sources or [out], on_bad=lambda error: None)
    out.mkdir(parents=True, exist_ok=True)
    by_env: dict[str, list[RunResult]] = {}
    for row in runs:
        by_env.setdefault(row.env_id, []).append(row)
    rows: list[SummaryRow] = []
    plots = []
    for env_id, env_runs in sorted(by_env.items()):
        slug = env_id.split("/")[-1].split("-")[0].lower()
        figure = plot_pareto(env_runs, "fps", out / f"pareto_{slug}",
                             title=f"{env_id}: test score vs FPS")
        plots.append(figure.png)
        hand_runs = [r for r in env_runs if r.name == "hand_designed"]
        hand = [r.fps for r in hand_runs]
        hand_score, hand_std = (_mean_std([r.score_mean for r in hand_runs]) if hand_runs
                                else (0.0, 0.0))
        for name in sorted({r.name for r in env_runs}):
            mine = [r for r in env_runs if r.name == name]
            score, score_std = _mean_std([r.score_mean for r in mine])
            versus = bool(hand_runs) and name != "hand_designed"
            welch_t, welch_p = (_welch([r.score_mean for r in mine],
                                       [r.score_mean for r in hand_runs]) if versus
                                else (None, None))
            fps, fps_std = _mean_std([r.fps for r in mine])
            energies = [r.energy_pj for r in mine if r.energy_pj is not None]
            rows.append(SummaryRow(
                env_id=env_id, method=name, runs=len(mine), score_mean=score,
                score_std=score_std, fps_mean=fps, fps_std=fps_std,
                latency_us=statistics.mean(r.latency_s for r in mine) * 1e6,
                energy_uj=statistics.mean(energies) * 1e-6 if energies else None,
                params=statistics.mean(r.params for r in mine),
                wall_time_min=statistics.mean(r.wall_time_s for r in mine) / 60.0,
                fps_vs_hand_designed=fps / statistics.mean(hand) if hand else None,
                score_vs_hand_designed=score - hand_score if versus else None,
                welch_t=welch_t, welch_p=welch_p,
                hypervolume=figure.methods[name].hypervolume,
                seed_hypervolume_mean=figure.methods[name].seed_hypervolume_mean,
                seed_hypervolume_std=figure.methods[name].seed_hypervolume_std,
                goal=(_goal(score, fps, hand_score, hand_std, statistics.mean(hand))
                      if hand and name != "hand_designed" else "-")))
    lines = ["| game | method | runs | test score (mean +- std over seeds) | FPS (mean +- std) "
             "| latency (us) | energy (uJ) | weights | wall time a run (min) "
             "| FPS vs hand-designed | score vs hand-designed (Welch t, p) "
             "| hypervolume (pooled front) | hypervolume a seed (mean +- std) "
             f"| goal (>= hand-designed mean - std, >= {GOAL_SPEEDUP:g}x its FPS) |",
             "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        lines.append(
            f"| {r.env_id} | {r.method} | {r.runs} | {r.score_mean:.2f} +- {r.score_std:.2f} | "
            f"{r.fps_mean:,.0f} +- {r.fps_std:,.0f} | {r.latency_us:.2f} | "
            + (f"{r.energy_uj:.3f}" if r.energy_uj is not None else "-")
            + f" | {r.params:,.0f} | {r.wall_time_min:.1f} | "
            + (f"{r.fps_vs_hand_designed:.2f}x" if r.fps_vs_hand_designed else "-")
            + f" | {_versus_hand(r)} | {r.hypervolume:.3f} | {r.seed_hypervolume_mean:.3f} +- "
            f"{r.seed_hypervolume_std:.3f} | {r.goal} |")
    lines.append("")
    lines.append("Per run: " + "; ".join(
        f"{r.name} s{r.seed} ({r.env_id.split('/')[-1]}): {r.score_mean:.2f}, {r.fps:,.0f} FPS"
        for r in sorted(runs, key=lambda r: (r.env_id, r.name, r.seed))))
    markdown = atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(SummaryRow.__dataclass_fields__))
    writer.writeheader()
    for r in rows:
        writer.writerow(r.__dict__)
    csv_path = atomic_write_text(out / "summary.csv", buffer.getvalue())
    json_path = atomic_write_text(out / "summary.json", json.dumps(
        [r.__dict__ for r in rows], indent=1) + "\n")
    return SweepSummary(rows, markdown, csv_path, json_path, plots)
