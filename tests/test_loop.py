"""The one training loop and its two users (``a3cs train`` and the co-search's supernet
training): determinism, the algorithm's optimizer and schedules in the search, devices, and
the shipped teachers the search picks."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
import yaml

from a3cs.cli import main
from a3cs.rl.checkpoint import load_agent, read_checkpoint
from a3cs.rl.envs import make_env
from a3cs.rl.networks import describe_action_space
from a3cs.rl.teachers import manifest, shipped_teacher
from a3cs.search.config import load_search_config
from a3cs.search.cosearch import CHECKPOINT, run_supernet_search
from a3cs.search.prepare import prepare
from a3cs_common.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "a3cs/data/zc706_cosearch_space.yaml"
TINY_RL = {"num_envs": 4, "n_steps": 32, "batch_size": 64, "n_epochs": 2}
TINY_BUDGET = {"warmup_steps": 128, "search_steps": 256, "retrain_steps": 256,
               "eval_episodes": 1, "teacher_steps": 256}
BREAKOUT_TEACHER = str(REPO / "a3cs/data/teachers/minatar_breakout.pt")


def _search_config(tmp_path: Path, **fields: object):
    data = {"env_id": "MinAtar/Breakout-v1", "seed": 1, "target": f"accelerator:{SPACE}",
            "rl": TINY_RL, "budget": TINY_BUDGET, "checkpoint_every": 2,
            "supernet": {"distill_paths": 2, "arch_batch": 32, "arch_paths": 1}, **fields}
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_search_config(str(path))


def _supernet_search(tmp_path: Path, name: str, **fields: object):
    config = _search_config(tmp_path, **fields)
    prep = prepare(config)
    rl = prep.rl.model_copy(update={"teacher": prep.teacher_path})
    return run_supernet_search(config, rl, prep.space, prep.target, tmp_path / name, lam=0.1,
                               search_hardware=True, resume=False, progress=False)


@pytest.mark.slow
def test_supernet_search_same_seed_same_numbers(tmp_path: Path) -> None:
    a = _supernet_search(tmp_path, "a", teacher=BREAKOUT_TEACHER)
    b = _supernet_search(tmp_path, "b", teacher=BREAKOUT_TEACHER)
    assert a.arch == b.arch and a.probabilities == b.probabilities and a.lam == b.lam
    saved_a = read_checkpoint(tmp_path / "a" / CHECKPOINT)
    saved_b = read_checkpoint(tmp_path / "b" / CHECKPOINT)
    for key, tensor in saved_a["model"].items():
        assert torch.equal(tensor, saved_b["model"][key]), key
    strip = [{k: v for k, v in row.items() if k not in ("wall_time_s", "steps_per_s")}
             for row in saved_a["metrics"]]
    assert strip == [{k: v for k, v in row.items() if k not in ("wall_time_s", "steps_per_s")}
                     for row in saved_b["metrics"]]
    assert a.device == "cpu" or torch.cuda.is_available()


def test_the_search_trains_with_the_configured_algorithm_and_schedules(tmp_path: Path) -> None:
    """The drift the shared loop removed: A2C's RMSprop, the learning-rate and clip schedules
    and the metrics of every update (warm-up rows lack the architecture columns)."""
    rl = {**TINY_RL, "algo": "a2c", "n_steps": 8, "batch_size": None, "n_epochs": 1,
          "lr_schedule": "linear", "learning_rate": 0.001}
    _supernet_search(tmp_path, "a2c", teacher=BREAKOUT_TEACHER, rl=rl,
                     budget={**TINY_BUDGET, "warmup_steps": 64, "search_steps": 96})
    saved = read_checkpoint(tmp_path / "a2c" / CHECKPOINT)
    states = saved["optimizer"]["state"].values()
    assert states and all("square_avg" in state for state in states)  # RMSprop's moments
    with open(tmp_path / "a2c" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    updates = len(rows)
    assert [float(row["learning_rate"]) for row in rows] == pytest.approx(
        [0.001 * (1 - i / updates) for i in range(updates)])
    assert rows[0]["lam"] == "" and float(rows[-1]["lam"]) > 0
    assert (tmp_path / "a2c" / "tb").is_dir()


def test_each_shipped_teacher_loads_and_fits_its_game() -> None:
    assert manifest().teachers, "the package ships at least one teacher"
    for env_id, entry in manifest().teachers.items():
        agent = load_agent(entry.path)
        assert agent.config.env_id == env_id
        assert agent.global_step >= entry.steps
        assert agent.config.seed == entry.seed
        envs = make_env(env_id, 1, 0)
        try:
            assert tuple(agent.obs_space.shape) == tuple(envs.single_observation_space.shape)
            assert describe_action_space(agent.action_space) == describe_action_space(
                envs.single_action_space)
        finally:
            envs.close()
        assert entry.score_std >= 0 and entry.episodes >= 100 and "a3cs train" in entry.command


def test_the_search_distills_the_teacher_of_its_game_by_default(tmp_path: Path) -> None:
    shipped = shipped_teacher("MinAtar/Breakout-v1")
    assert shipped is not None
    assert prepare(load_search_config(None)).teacher_path == str(shipped.path)
    assert prepare(_search_config(tmp_path, teacher="train")).teacher_path is None
    path = str(tmp_path / "mine.pt")
    assert load_search_config(None, {"teacher": path}).teacher == path
    games_without = [env for env in ("MinAtar/Freeway-v1", "MinAtar/Seaquest-v1")
                     if shipped_teacher(env) is None]
    for env_id in games_without:  # trained in the run's teacher stage
        assert prepare(_search_config(tmp_path, env_id=env_id)).teacher_path is None


def test_agents_the_search_trains_record_the_shipped_teacher_portably(tmp_path: Path) -> None:
    """A proxy trial's, a finalist's and the retraining's config.yaml name the shipped teacher
    by its path in the package's data folder, never by this machine's folders, so a
    committed run re-trains on another clone."""
    from a3cs.rl.checkpoint import load_teacher
    from a3cs.rl.train import train
    from nas.arch import reference_arch

    prep = prepare(_search_config(tmp_path))
    assert prep.teacher_path is not None and Path(prep.teacher_path).is_absolute()
    teacher = load_teacher(prep.teacher_path, field="teacher")
    config = prep.agent_training(reference_arch(prep.obs_shape), 64, teacher)
    assert config.teacher == "teachers/minatar_breakout.pt"
    assert config.distill == prep.config.distill and config.total_steps == 64
    assert prep.agent_training(None, 64, None).teacher is None
    # a run that recorded the teacher absolutely resumes and is rewritten portably
    run = tmp_path / "run"
    small = {"num_envs": 2, "n_steps": 16, "batch_size": 32, "n_epochs": 1}
    train(config.model_copy(update={"teacher": prep.teacher_path, "total_steps": 32,
                                    **small}), run, progress=False)
    assert prep.teacher_path in (run / "config.yaml").read_text()
    train(config.model_copy(update={**small}), run, resume=True, progress=False)
    text = (run / "config.yaml").read_text()
    assert "teacher: teachers/minatar_breakout.pt" in text and prep.teacher_path not in text
    # and one recorded portably stays so when resumed with the absolute name
    train(config.model_copy(update={"teacher": prep.teacher_path, "total_steps": 96, **small}),
          run, resume=True, progress=False)
    text = (run / "config.yaml").read_text()
    assert "teacher: teachers/minatar_breakout.pt" in text and prep.teacher_path not in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("argv", [
    ["train", "--env", "CartPole-v1", "--steps", "64", "--device", "cuda", "--out", "{out}"],
    ["search", "--device", "cuda", "--out", "{out}", "--quiet"],
    ["evaluate", BREAKOUT_TEACHER, "--device", "cuda"],
])
def test_cuda_without_cuda_is_a_one_line_error(tmp_path: Path, argv: list[str],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main([arg.format(out=out) for arg in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "device: got 'cuda'" in err, err
    assert not out.exists()


def test_own_hardware_reference_is_the_hand_designed_network_on_its_own_accelerator(
        tmp_path: Path) -> None:
    """cost.reference: own_hardware fixes latency_ref at the hand-designed network's model
    latency on its accelerator search's choice, as the evidence compares FPS."""
    from a3cs.search.accelerator_target import AcceleratorTarget
    from nas.arch import reference_arch

    _supernet_search(tmp_path, "own", teacher=BREAKOUT_TEACHER,
                     cost={"lam": 0.5, "target_speedup": 2.2, "penalty": "absolute",
                           "reference": "own_hardware"})
    with open(tmp_path / "own" / "metrics.csv") as handle:
        references = {float(row["reference_latency_s"]) for row in csv.DictReader(handle)
                      if row["reference_latency_s"]}
    prep = prepare(_search_config(tmp_path))
    workload = reference_arch(prep.obs_shape).workload(prep.obs_shape, prep.action_dim)
    own = AcceleratorTarget(str(SPACE)).searched_latency(workload, 1)
    assert len(references) == 1 and references.pop() == pytest.approx(own)
    # the uniform logits' accelerator runs it slower than its own accelerator does
    assert AcceleratorTarget(str(SPACE)).workload_latency(workload) > own


def test_tolerance_adapts_lambda_as_a_lagrange_multiplier(tmp_path: Path) -> None:
    """cost.tolerance: lam goes up after each architecture step whose derived network is
    outside the tolerance around the target latency, down after each inside."""
    rate, tolerance, speedup = 0.05, 0.15, 2.2
    _supernet_search(tmp_path, "lagrange", teacher=BREAKOUT_TEACHER,
                     cost={"lam": 0.5, "target_speedup": speedup, "penalty": "absolute",
                           "tolerance": tolerance, "lam_rate": rate,
                           "reference": "own_hardware"})
    with open(tmp_path / "lagrange" / "metrics.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row["lam"]]
    assert rows
    lam = 0.1  # _supernet_search's starting lam
    for row in rows:
        target = float(row["reference_latency_s"]) / speedup
        outside = abs(float(row["derived_latency_s"]) / target - 1.0) > tolerance
        lam *= math.exp(rate if outside else -rate)
        assert float(row["lam"]) == pytest.approx(lam)
    bad = {"cost": {"lam": 0.5, "target_speedup": 2.0, "tolerance": 0.1}}
    with pytest.raises(ConfigError, match=r"cost\.tolerance"):
        _search_config(tmp_path, **bad)


def test_setpoint_control_moves_the_target_not_lambda(tmp_path: Path) -> None:
    """cost.tolerance_control: setpoint keeps lam and moves the penalty's target up after each
    architecture step whose derived network is too fast, down after each too slow."""
    rate, tolerance, speedup = 0.05, 0.15, 2.2
    _supernet_search(tmp_path, "setpoint", teacher=BREAKOUT_TEACHER,
                     cost={"lam": 0.5, "target_speedup": speedup, "penalty": "absolute",
                           "tolerance": tolerance, "tolerance_control": "setpoint",
                           "lam_rate": rate, "reference": "own_hardware"})
    with open(tmp_path / "setpoint" / "metrics.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row["lam"]]
    assert rows and {float(row["lam"]) for row in rows} == {0.1}
    scale = 1.0
    for row in rows:
        ratio = float(row["derived_latency_s"]) / (float(row["reference_latency_s"]) / speedup)
        scale *= (math.exp(rate) if ratio < 1 - tolerance
                  else math.exp(-rate) if ratio > 1 + tolerance else 1.0)
        assert float(row["target_scale"]) == pytest.approx(scale)
    assert any(float(row["target_scale"]) != 1.0 for row in rows)
