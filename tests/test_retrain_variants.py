"""experiments/retrain_variants.py: which runs it retrains, what each variant changes in the
search's retrain config, and the table it draws from the committed evidence."""

from __future__ import annotations

import importlib.util
import json
import statistics
from pathlib import Path

import pytest
import yaml

from a3cs.rl.config import TrainConfig
from a3cs.rl.defaults import defaults_for

REPO = Path(__file__).resolve().parents[1]
EVIDENCE = REPO / "experiments" / "results"
V19 = EVIDENCE / "cosearch_minatar_v19"


@pytest.fixture(scope="module")
def variants():
    spec = importlib.util.spec_from_file_location(
        "retrain_variants", REPO / "experiments" / "retrain_variants.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_batched_variant_trains_as_the_batched_entry(variants) -> None:
    """The search's retrain config (written with the MinAtar entry's values) becomes the batched
    entry's training: every field the table's batched section sets, the rest unchanged."""
    run = V19 / "breakout_evolution_finalists_s0"
    config = yaml.safe_load((run / "retrain" / "config.yaml").read_text())
    changes = variants.VARIANTS["batched"][1](config)
    changed = TrainConfig(**{**config, **changes})
    entry = defaults_for(config["env_id"], "ppo", backend="batched").values
    assert changed.env_backend == "batched"
    for key, value in entry.items():
        if key != "total_steps":
            assert getattr(changed, key) == value, key
    assert changed.total_steps == config["total_steps"]
    assert changed.teacher == config["teacher"] and changed.arch == TrainConfig(**config).arch


def test_runs_are_chosen_by_game_and_method(variants) -> None:
    """Game and method come from each run's search config, so a run named without its game
    (v16's ``hand_designed_s3``, an Asterix run) is found too."""
    v16 = EVIDENCE / "cosearch_minatar_v16"
    hand = variants.runs_of(v16, ["asterix"], "batched", ["hand_designed"])
    assert [run.name for run in hand] == ["hand_designed_s3", "hand_designed_s4"]
    assert variants.runs_of(v16, ["breakout"], "batched", ["hand_designed"]) == []
    by_label = variants.runs_of(V19, ["spaceinvaders"], "batched", ["evolution_finalists"])
    by_method = variants.runs_of(V19, ["spaceinvaders"], "batched", ["evolution"])
    assert len(by_label) == 5 and by_label == by_method


def test_the_table_is_the_committed_scores(variants, tmp_path: Path) -> None:
    """The no-distillation ablation's table, redrawn from the committed eval.json files into
    another directory: one row a game and method, its means those of the runs' scores."""
    markdown = variants.report([V19], "no_distill", out=tmp_path)
    rows = json.loads((tmp_path / "retrain_no_distill.json").read_text())
    assert markdown == tmp_path / "retrain_no_distill.md"
    assert (tmp_path / "retrain_no_distill.png").stat().st_size > 0
    assert {(row["env_id"], row["method"], row["runs"]) for row in rows} == {
        (f"MinAtar/{game}-v1", "evolution_finalists", 5)
        for game in ("Breakout", "SpaceInvaders", "Asterix")}
    for row in rows:
        game = row["env_id"].split("/")[1].split("-")[0].lower()
        runs = sorted(V19.glob(f"{game}_evolution_finalists_s*"))
        scores = [json.loads((run / "retrain_no_distill" / "eval.json").read_text())
                  ["mean_return"] for run in runs]
        assert row["variant_mean"] == pytest.approx(statistics.mean(scores))
        searched = [json.loads((run / "eval.json").read_text())["mean_return"] for run in runs]
        assert row["search_mean"] == pytest.approx(statistics.mean(searched))


@pytest.mark.parametrize("argv", [
    ["experiments/no_such_sweep", "--variant", "batched"],
    [str(V19), "--variant", "batched", "--methods", "no_such_method"],
    [str(V19), "--variant", "batched", "--out", "no/such/dir"],
    [str(V19), "--variant", "not_a_variant"],
])
def test_bad_arguments_are_one_line_errors(variants, argv: list[str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        variants.main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error:" in error and "Traceback" not in error
