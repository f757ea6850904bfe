"""The supervised distillation proxy (distill.proxy) on the shipped Breakout teacher's play."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from a3cs.rl.checkpoint import load_teacher
from a3cs.rl.envs import make_env
from a3cs.rl.networks import build_agent
from a3cs.search.teacher_play import collect_teacher_play
from distill.proxy import TeacherPlay, distill_proxy
from nas.arch import reference_arch

REPO = Path(__file__).resolve().parents[1]
TEACHER = REPO / "a3cs/data/teachers/minatar_breakout.pt"
ENV = "MinAtar/Breakout-v1"


@pytest.fixture(scope="module")
def play() -> tuple[TeacherPlay, TeacherPlay]:
    teacher = load_teacher(str(TEACHER))
    return collect_teacher_play(teacher.model, ENV, 1536, seed=7).split(1024)


def _student(seed: int = 0) -> torch.nn.Module:
    envs = make_env(ENV, 1, 0)
    try:
        return build_agent(reference_arch(envs.single_observation_space.shape),
                           envs.single_observation_space,
                           envs.single_action_space, seed=seed)
    finally:
        envs.close()


def _score(model: torch.nn.Module, play: tuple[TeacherPlay, TeacherPlay], steps: int,
           seed: int = 0, before_step=None):
    return distill_proxy(model, *play, kind="categorical", steps=steps, batch_size=64, lr=1e-3,
                         actor_coef=1.0, critic_coef=0.5, seed=seed, before_step=before_step)


def test_teacher_play_is_seeded_and_holds_the_teachers_outputs(play) -> None:
    train, held_out = play
    assert len(train) == 1024 and len(held_out) == 512
    teacher = load_teacher(str(TEACHER))
    assert train.obs.shape == (1024, *teacher.obs_shape) and train.teacher_dist.shape == (1024, 3)
    again = collect_teacher_play(teacher.model, ENV, 1536, seed=7)
    assert torch.equal(again.obs[:1024], train.obs)
    with torch.no_grad():
        dist, value = teacher.model(held_out.obs)
    assert torch.allclose(dist, held_out.teacher_dist) and torch.allclose(value,
                                                                         held_out.teacher_value)
    other = collect_teacher_play(teacher.model, ENV, 1536, seed=8)
    assert not torch.equal(other.obs, again.obs)
    with pytest.raises(ValueError, match="allowed: 0 < first < 1536"):
        again.split(1536)


def test_the_teacher_itself_agrees_everywhere(play) -> None:
    teacher = copy.deepcopy(load_teacher(str(TEACHER)).model)
    for param in teacher.parameters():
        param.requires_grad_(True)
    score = _score(teacher, play, steps=0)
    assert score.agreement == 1.0
    assert score.actor_kl == pytest.approx(0.0, abs=1e-6)
    assert score.distill_loss == pytest.approx(0.0, abs=1e-6)


def test_training_on_the_play_raises_agreement_and_is_deterministic(play) -> None:
    untrained = _score(_student(), play, steps=0)
    trained = _score(_student(), play, steps=150)
    assert trained.distill_loss < untrained.distill_loss
    assert trained.agreement > untrained.agreement
    assert _score(_student(), play, steps=150) == trained


def test_before_step_sees_the_progress_of_every_step(play) -> None:
    seen: list[float] = []
    _score(_student(), play, steps=4, before_step=seen.append)
    assert seen == [0.0, 0.25, 0.5, 0.75]


def test_a_sparse_candidate_is_scored_at_its_sparsity(play) -> None:
    """The search's distill proxy prunes a candidate's 1xN layers on its retraining's schedule
    (a3cs.search.multitrial.proxy_pruning): the scored network is the sparse one, with every
    block row keeping its share (row-balanced, as the retraining prunes)."""
    from a3cs.rl.config import make_config
    from a3cs.search.multitrial import proxy_pruning
    from nas.arch import Arch
    from nas.layers import prunable_layers

    envs = make_env(ENV, 1, 0)
    try:
        arch = Arch.model_validate({"name": "sparse", "layers": [
            {"op": "conv3x3", "width": 16,
             "weight_format": {"type": "one_by_n", "n": 4, "density": 0.25}}],
            "head": {"width": 128, "weight_format": {"type": "one_by_n", "n": 8,
                                                      "density": 0.5}}})
        model = build_agent(arch, envs.single_observation_space, envs.single_action_space,
                            seed=0)
        dense = build_agent(reference_arch(envs.single_observation_space.shape),
                            envs.single_observation_space, envs.single_action_space, seed=0)
    finally:
        envs.close()
    rl = make_config({"env_id": ENV, "block_pruning": "row_balanced"})
    assert proxy_pruning(dense, rl) is None
    layers = list(prunable_layers(model))
    assert len(layers) == 2 and all(layer.sparsity == 0.0 for layer in layers)
    _score(model, play, steps=20, before_step=proxy_pruning(model, rl))
    assert [layer.target_sparsity for layer in layers] == [0.75, 0.5]
    for layer in layers:  # reached by the end of the schedule (sparsity_end 0.6 of the steps)
        assert layer.sparsity == pytest.approx(layer.target_sparsity)
        kept_per_row = layer.mask.sum(dim=1)
        assert bool((kept_per_row == kept_per_row[0]).all())


def test_the_search_scores_a_sparse_candidate_pruned(play, monkeypatch) -> None:
    """The search's trial (a3cs.search.multitrial._distill_trial) hands the proxy the pruning
    of its candidate: the network it scores ends at its target sparsity; a dense one gets
    no pruning."""
    from a3cs.search import multitrial
    from a3cs.search.config import load_search_config
    from a3cs.search.prepare import prepare
    from nas.arch import Arch
    from nas.layers import prunable_layers

    prep = prepare(load_search_config(None, {"proxy": {"distill_steps": 8}}))
    scored: list[tuple[torch.nn.Module, object]] = []
    real = multitrial.distill_proxy

    def spy(model, *args, before_step=None, **kwargs):
        scored.append((model, before_step))
        return real(model, *args, before_step=before_step, **kwargs)

    monkeypatch.setattr(multitrial, "distill_proxy", spy)
    sparse = Arch.model_validate({"name": "sparse", "layers": [
        {"op": "conv3x3", "width": 16}],
        "head": {"width": 128, "weight_format": {"type": "one_by_n", "n": 8, "density": 0.25}}})
    multitrial._distill_trial(prep, sparse, play)
    multitrial._distill_trial(prep, reference_arch(prep.obs_shape), play)
    (model, before_step), (_, dense_before_step) = scored
    (layer,) = prunable_layers(model)
    assert before_step is not None and dense_before_step is None
    assert layer.sparsity == pytest.approx(layer.target_sparsity) == 0.75
