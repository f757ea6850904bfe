"""Pareto fronts, hypervolume, and `a3cs plot`."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from a3cs.cli import main
from a3cs.pareto import hypervolume_2d, non_dominated
from a3cs.results import RunResult, read_results, write_results


def test_non_dominated_simple():
    pts = np.array([[1, 5], [2, 4], [2, 5], [0, 0], [3, 1]])
    assert non_dominated(pts).tolist() == [False, False, True, False, True]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=8))
def test_hypervolume_equals_grid_count(points):
    # On an integer grid, the dominated area is the number of unit cells below some point.
    pts = np.array(points, dtype=float)
    ref = (-1.0, -1.0)
    cells = sum(1 for x, y in itertools.product(range(-1, 7), range(-1, 7))
                if any(px >= x + 1 and py >= y + 1 for px, py in points))
    assert hypervolume_2d(pts, ref) == pytest.approx(cells)


def _row(method, seed, fps, score, energy=1e6):
    return RunResult(method=method, seed=seed, lam=0.1, env_id="MinAtar/Breakout-v1",
                     target="accelerator:space.yaml", score_mean=score, score_std=0.5,
                     episodes=10, fps=fps, latency_s=1 / fps, energy_pj=energy, flops=1000,
                     params=100, resources={"dsp": 12.0}, wall_time_s=60.0 * (seed + 1))


def test_results_round_trip(tmp_path):
    rows = [_row("a3cs", 0, 1000.0, 5.0), _row("a3cs", 1, 2000.0, 4.0)]
    _, csv_path = write_results(tmp_path, rows)
    assert read_results(tmp_path) == rows
    assert csv_path.read_text().splitlines()[0].startswith("method,seed,lam,env_id")


def test_plot_command(tmp_path, capsys):
    for i, (method, fps, score) in enumerate([("a3cs", 4000, 6.0), ("a3cs", 9000, 5.0),
                                              ("hand_designed", 1500, 6.2),
                                              ("sequential", 3000, 4.0)]):
        write_results(tmp_path / f"run{i}", [_row(method, i, float(fps), score)])
    code = main(["plot", str(tmp_path), "--x", "fps", "--out", str(tmp_path / "front")])
    out = capsys.readouterr().out
    assert code == 0
    assert (tmp_path / "front.png").stat().st_size > 0
    assert (tmp_path / "front.svg").read_text().startswith("<?xml")
    hv = {line.split()[0]: float(line.split()[3]) for line in out.splitlines()
          if line.split() and line.split()[0] in ("a3cs", "hand_designed", "sequential")}
    assert hv["a3cs"] > hv["sequential"] >= 0
    assert main(["plot", str(tmp_path), "--x", "latency", "--out", str(tmp_path / "lat")]) == 0


def test_plot_bad_input(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "nope")]) == 2
    assert "RUN_DIR: got" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["plot", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "results.json" in err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "results.json").write_text("{not json")
    assert main(["plot", str(bad)]) == 2
    assert "valid JSON (parse error at line 1)" in capsys.readouterr().err


def test_plot_summary_of_several_directories_states_the_goal(tmp_path, capsys):
    """``a3cs plot A B --summary DIR``: one table over both, each method against the goal
    (>= the hand-designed mean minus its std, at >= 2x its FPS)."""
    first, second = tmp_path / "hand_sweep", tmp_path / "search_sweep"
    for seed, score in enumerate([10.0, 12.0, 14.0]):  # mean 12, std 2: the bar is 10
        write_results(first / f"hand_s{seed}", [_row("hand_designed", seed, 1000.0, score)])
        write_results(second / f"fast_s{seed}", [_row("evolution", seed, 2500.0, score - 1)])
        write_results(second / f"slow_s{seed}", [_row("random", seed, 1500.0, score + 5)])
        write_results(second / f"weak_s{seed}", [_row("sequential", seed, 500.0, score - 6)])
    out = tmp_path / "evidence"
    assert main(["plot", str(first), str(second), "--summary", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"summary: {out / 'summary.md'}" in printed
    table = (out / "summary.md").read_text()
    rows = {line.split("|")[2].strip(): line for line in table.splitlines()
            if line.startswith("| MinAtar")}
    assert "| 2.50x |" in rows["evolution"] and rows["evolution"].rstrip().endswith("| met |")
    assert "| 100 | 2.0 | 2.50x |" in rows["evolution"]  # weights, minutes a run (1, 2, 3)
    assert rows["random"].rstrip().endswith("| missed: FPS 1.50x |")
    assert rows["sequential"].rstrip().endswith("| missed: score -4.00, FPS 0.50x |")
    assert rows["hand_designed"].rstrip().endswith("| - |")
    # against hand_designed: the difference of means and Welch's t with 4 degrees of freedom
    # (equal spreads): t = d / sqrt(4/3 + 4/3), two-sided p of Student's t
    assert "| 2.50x | -1.00 (-0.61, 0.57) |" in rows["evolution"]
    assert "| 0.50x | -6.00 (-3.67, 0.02) |" in rows["sequential"]
    assert "| 1.00x | - |" in rows["hand_designed"]
    assert (out / "pareto_breakout.png").stat().st_size > 0
    assert (out / "summary.csv").read_text().splitlines()[0].endswith(
        ",score_vs_hand_designed,welch_t,welch_p,hypervolume,seed_hypervolume_mean,"
        "seed_hypervolume_std,goal")


def test_pooled_hypervolume_rewards_the_luckiest_seed_and_the_seed_mean_does_not(tmp_path):
    """Two methods at one FPS: "steady" scores 8 on each of its seeds, "lucky" 0, 0 and 10.
    On the normalised scale (score 0 -> 0, 10 -> 1; FPS all equal -> 0; reference -0.1 on
    both) a point's area is (0 + 0.1) x (scaled score + 0.1): pooled, lucky's best seed gives
    0.1 x 1.1 = 0.11 against steady's 0.1 x 0.9 = 0.09; a seed on average, lucky
    0.1 x (0.1 + 0.1 + 1.1) / 3 = 0.0433 against steady's 0.09."""
    from a3cs.plotting import plot_pareto

    rows = ([_row("steady", seed, 1000.0, 8.0) for seed in range(3)]
            + [_row("lucky", seed, 1000.0, score) for seed, score in enumerate([0.0, 0.0, 10.0])])
    stats = plot_pareto(rows, "fps", tmp_path / "front").methods
    assert stats["lucky"].hypervolume == pytest.approx(0.11)
    assert stats["steady"].hypervolume == pytest.approx(0.09)
    assert stats["lucky"].seed_hypervolume_mean == pytest.approx(0.13 / 3)
    assert stats["steady"].seed_hypervolume_mean == pytest.approx(0.09)
    assert stats["steady"].seed_hypervolume_std == pytest.approx(0.0)
    assert stats["lucky"].seed_hypervolume_std == pytest.approx(np.std([0.01, 0.01, 0.11],
                                                                       ddof=1))


def test_welch_is_left_out_where_it_is_undefined() -> None:
    from a3cs.sweep.summary import _welch

    assert _welch([1.0], [1.0, 2.0]) == (None, None)
    assert _welch([3.0, 3.0], [2.0, 2.0]) == (None, None)
    t, p = _welch([3.0, 3.0], [1.0, 2.0])  # one side without spread: still defined
    assert t is not None and t > 0 and p is not None and 0 < p < 1
