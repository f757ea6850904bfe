"""Everything a search run checks and builds before its first stage: the validated training
settings, the agent search space, the target, the teacher to distill, the device; and the
run's log.  Shared by :mod:`a3cs.search.run` and :mod:`a3cs.search.multitrial`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch

from a3cs.paths import portable_path
from a3cs.rl.checkpoint import load_agent, load_teacher
from a3cs.rl.config import TrainConfig, make_config, resolve_family_defaults
from a3cs.rl.defaults import DefaultsEntry, with_env_defaults
from a3cs.rl.envs import env_family, make_env
from a3cs.rl.evaluate import EvalResult, evaluate_policy, model_policy
from a3cs.rl.loop import pick_device
from a3cs.rl.networks import action_dim, describe_action_space
from a3cs.rl.teachers import shipped_teacher
from a3cs.rl.train import TrainResult, train
from a3cs.search.config import TRAIN_TEACHER, SearchConfig
from a3cs.search.target_factory import make_target
from a3cs.search.targets import Target
from a3cs_common.errors import ConfigError
from a3cs_common.io import atomic_write_text
from a3cs_common.torch_settings import deterministic_kernels
from distill.teacher import Teacher
from hw_sim.workload import Workload
from nas.arch import Arch
from nas.space import SearchSpace, default_space, load_space

#: How a search prices architectures before training them, and how a multi-trial search scores
#: its trials; recorded in ``search/scoring.json`` when a search stage starts, so that no run is
#: resumed over work another version did (a run directory holds one search).  1: before
#: 2026-12-07 (session 19), the distill proxy trained 1xN / N:M candidates dense; 2: the proxy
#: prunes them on their retraining's schedule; 3 (session 22): 1xN layers priced with masks
#: drawn as the training prunes them (row-balanced or not), a skip layer's position not part
#: of a trial's key; from session 23 the supernet search records it too; 4 (session 24): a
#: MinAtar search's supernet, finalists and retraining train on the batched games unless
#: ``rl.env_backend`` says otherwise.
SEARCH_SCORING = 4
SCORING_FILE = "scoring.json"


def check_scoring(stage: Path, *, resumed_work: Path | None) -> None:
    """Record :data:`SEARCH_SCORING` in the search stage directory ``stage``; if the stage
    resumes work already done (``resumed_work``: its trials, its checkpoint, the finished
    stage), first check that this version did it (no record: version 2 or earlier).

    Raises:
        ConfigError: another version priced or scored ``resumed_work``; nothing is written.
    """
    path = stage / SCORING_FILE
    if resumed_work is not None:
        try:
            recorded = (json.loads(path.read_text()).get("trial_scoring") if path.is_file()
                        else "2 or earlier")
        except (ValueError, AttributeError):  # not JSON (or not text), not a mapping
            raise ConfigError(str(path), "a damaged file", 'the {"trial_scoring": N} a search '
                              "writes: start a new --out directory") from None
        if recorded != SEARCH_SCORING:
            raise ConfigError(
                str(resumed_work), f"a search scored by version {recorded}",
                f"a search scored by this version ({SEARCH_SCORING}; "
                "a3cs.search.prepare.SEARCH_SCORING says what changed): start a new --out "
                "directory, or resume with the commit that began the run")
        return
    stage.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"trial_scoring": SEARCH_SCORING}) + "\n")


class RunLog:
    """Appends timestamped lines to ``log.txt`` and echoes them."""

    def __init__(self, path: Path, echo: bool):
        self.path, self.echo = path, echo

    def __call__(self, message: str) -> None:
        line = f"[{datetime.now().strftime('%Y-%m-%d %H:%M:%S')}] {message}"
        with self.path.open("a") as handle:
            handle.write(line + "\n")
        if self.echo:
            print(line, flush=True)


@dataclass
class Prepared:
    """A search run's validated inputs (what :func:`prepare` builds)."""

    config: SearchConfig
    rl: TrainConfig
    space: SearchSpace
    target: Target
    obs_shape: tuple[int, ...]
    action_space: str
    action_dim: int
    device: torch.device
    defaults: DefaultsEntry
    teacher_path: str | None  # None: train one in the teacher stage

    def workload(self, arch: Arch, *, name: str | None = None) -> Workload:
        """How the search prices ``arch`` before it is trained: its workload for the run's
        game, its 1xN masks drawn as the run's training prunes them (row-balanced or not)."""
        return arch.workload(self.obs_shape, self.action_dim, name=name,
                             balanced_masks=self.rl.balanced_masks)

    def agent_training(self, arch: Arch | None, total_steps: int,
                       teacher: Teacher | None) -> TrainConfig:
        """How the search trains an agent of ``arch`` (a proxy trial, a finalist, the
        retraining): the run's PPO settings for ``total_steps`` environment steps, distilling
        ``teacher`` (recorded by its portable path, so a committed run names no machine's
        folders) with the run's distillation settings."""
        return self.rl.model_copy(update={
            "total_steps": total_steps, "arch": arch,
            "teacher": portable_path(teacher.source) if teacher is not None else None,
            "distill": self.config.distill})

    def train_agent(self, arch: Arch | None, total_steps: int, teacher: Teacher | None,
                    run_dir: Path, *, progress: bool) -> TrainResult:
        """Train an agent of ``arch`` as :meth:`agent_training` says, in ``run_dir``; a run
        directory that holds a checkpoint (a stopped search) is resumed from it."""
        return train(self.agent_training(arch, total_steps, teacher), run_dir,
                     resume=(run_dir / "checkpoint.pt").is_file(), progress=progress)

    def score_policy(self, model: torch.nn.Module, episodes: int, *,
                     episode_seed: int) -> EvalResult:
        """``model`` over ``episodes`` episodes of the run's game seeded from ``episode_seed``,
        acting with the run's seed, with deterministic kernels on the run's device (how the
        search scores the teacher, its finalists and its agent)."""
        with deterministic_kernels(self.device):
            return evaluate_policy(model_policy(model, seed=self.config.seed),
                                   self.config.env_id, episodes, seed=episode_seed)

    def score_agent(self, checkpoint: Path, episodes: int, *, episode_seed: int,
                    field: str) -> EvalResult:
        """:meth:`score_policy` of the trained agent at ``checkpoint``, loaded on the run's
        device; ``field`` names the checkpoint in a load error."""
        agent = load_agent(checkpoint, field=field, device=self.device)
        return self.score_policy(agent.model, episodes, episode_seed=episode_seed)


def prepare(config: SearchConfig) -> Prepared:
    """Validate every input before anything is trained.

    Raises:
        ConfigError: unknown env id, a target/space/teacher that does not exist or does not fit
            the environment, or PPO settings that are invalid.
    """
    env_family(config.env_id)  # unknown env id -> ConfigError
    values, defaults = with_env_defaults({**config.rl, "env_id": config.env_id,
                                          "seed": config.seed,
                                          "torch_threads": config.torch_threads,
                                          "device": config.device})
    rl = resolve_family_defaults(make_config(values, source="rl"), env_family(config.env_id))
    probe = make_env(config.env_id, 1, config.seed)
    try:
        obs_shape = tuple(int(d) for d in probe.single_observation_space.shape)
        action_space = describe_action_space(probe.single_action_space)
        n_actions = action_dim(probe.single_action_space)
    finally:
        probe.close()
    space = load_space(config.space, field="space") if config.space else default_space(obs_shape)
    space.check_fits(obs_shape)
    teacher_path = config.teacher
    if teacher_path is None:  # the package's teacher of this game, if it ships one
        shipped = shipped_teacher(config.env_id)
        teacher_path = str(shipped.path) if shipped is not None else None
    elif teacher_path == TRAIN_TEACHER:
        teacher_path = None
    if teacher_path is not None and config.distills:
        load_teacher(teacher_path, field="teacher").check_compatible(
            obs_shape, action_space, field="teacher")
    target = make_target(config.target_kind, config.target_value, config.seed)
    return Prepared(config, rl, space, target, obs_shape, action_space, n_actions,
                     pick_device(config.device), defaults, teacher_path)


