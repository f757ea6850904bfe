"""Multi-trial baselines: nni's Random and RegularizedEvolution strategies over the joint
discrete space (agent architecture choices and accelerator parameters).

Each trial trains its agent for ``budget.proxy_steps`` steps (with distillation when there is
a teacher) and is scored by a short-training proxy::

    reward = return / |teacher score| - lam * latency / latency_ref

where ``latency`` is the analytical model's latency of the trial's agent on the trial's
hardware and ``latency_ref`` that of the hand-designed network on the same hardware.  A
hardware sample on which the agent cannot run scores ``-inf`` without training.  The number
of trials is ``search_steps // proxy_steps``, so the search spends the same environment steps
as the differentiable co-search.

nni runs in-process (``SequentialExecutionEngine``: no experiment server, nothing listens on
a port).  Finished trials are cached in ``trials.json``, so a resumed run replays them without
training (the strategies are seeded and propose the same samples).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from a3cs.rl.evaluate import evaluate_policy, model_policy
from a3cs.rl.train import train
from a3cs.search.prepare import Prepared, RunLog
from a3cs.search.targets import HardwareChoice
from a3cs_common.io import atomic_write_text
from distill.teacher import Teacher
from nas.arch import Arch, reference_arch


@dataclass(frozen=True)
class TrialRecord:
    """One evaluated sample."""

    trial: int
    sample: dict[str, Any]
    reward: float
    proxy_return: float | None
    latency_s: float | None
    reference_latency_s: float | None
    env_steps: int


@dataclass(frozen=True)
class MultiTrialOutcome:
    arch: Arch
    hardware: HardwareChoice
    env_steps: int
    trials: int
    best_reward: float


class _Candidate:
    """A frozen joint sample (nni's engine keeps a weak reference to it)."""

    def __init__(self, sample: dict[str, Any]):
        self.sample = sample


def _joint_space(parts: dict[str, Any]) -> Any:
    from nni.mutable import MutableDict

    class JointSpace(MutableDict):
        def freeze(self, sample: dict[str, Any]) -> _Candidate:
            return _Candidate(super().freeze(sample))

    return JointSpace(parts)


def run_multitrial(prep: Prepared, teacher: Teacher | None, stage: Path, *, progress: bool,
                   log: RunLog) -> MultiTrialOutcome:
    """Run the method's nni strategy; return the best trial's architecture and hardware."""
    import nni
    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.execution import SequentialExecutionEngine
    from nni.nas.space import RawFormatModelSpace
    from nni.nas.strategy import Random, RegularizedEvolution
    from tqdm import tqdm

    config = prep.config
    stage.mkdir(parents=True, exist_ok=True)
    n_trials = max(1, config.budget.search_steps // config.budget.proxy_steps)
    parts: dict[str, Any] = {"arch": prep.space.mutable(prep.obs_shape)}
    hardware_space = prep.target.mutable()
    if hardware_space is not None:
        parts["hw"] = hardware_space
    reference = reference_arch(prep.obs_shape).workload(prep.obs_shape, prep.action_dim)

    scale = 1.0
    if teacher is not None:
        score = evaluate_policy(model_policy(teacher.model, seed=config.seed), config.env_id,
                                10, seed=20_000 + config.seed)
        scale = max(abs(score.mean_return), 1e-6)
        log(f"teacher score {score.mean_return:.2f} normalises the proxy returns")

    cache_path = stage / "trials.json"
    records: list[TrialRecord] = ([TrialRecord(**r) for r in json.loads(cache_path.read_text())]
                                  if cache_path.is_file() else [])
    cached = {json.dumps(r.sample, sort_keys=True): r for r in records}
    bar = tqdm(total=n_trials, unit="trial", disable=not progress, desc=config.method)
    seen = 0

    def evaluate(candidate: _Candidate) -> None:
        nonlocal seen
        sample = {part: {k: v for k, v in values.items() if k != "budget"}
                  for part, values in candidate.sample.items()}
        key = json.dumps(sample, sort_keys=True)
        if key not in cached:
            cached[key] = _run_trial(prep, teacher, stage, sample, len(records), reference,
                                     scale)
            records.append(cached[key])
            atomic_write_text(cache_path, json.dumps([asdict(r) for r in records], indent=1))
        seen += 1
        bar.update(1)
        bar.set_postfix(reward=f"{cached[key].reward:.3f}", refresh=False)
        nni.report_final_result(cached[key].reward if math.isfinite(cached[key].reward)
                                else -1e9)

    strategy = (Random(seed=config.seed) if config.method == "random" else
                RegularizedEvolution(population_size=max(4, n_trials // 3),
                                     sample_size=max(2, n_trials // 6), seed=config.seed))
    nni_logger = logging.getLogger("nni")
    level = nni_logger.level
    nni_logger.setLevel(logging.WARNING)
    try:
        strategy.initialize(RawFormatModelSpace(_joint_space(parts), FunctionalEvaluator(evaluate)),
                            SequentialExecutionEngine(max_model_count=n_trials))
        strategy.run()
    finally:
        nni_logger.setLevel(level)
        bar.close()
    best = max(records, key=lambda r: r.reward)
    if not math.isfinite(best.reward):
        from a3cs_common.errors import ConfigError

        raise ConfigError("target", config.target, "hardware on which some sampled agent can "
                          f"run (none of {len(records)} trials could)")
    arch = prep.space.arch(best.sample["arch"], prep.obs_shape,
                           name=f"{config.method}_seed{config.seed}")
    hardware = prep.target.choice_for_sample(best.sample.get("hw"), arch.workload(
        prep.obs_shape, prep.action_dim))
    log(f"best of {len(records)} trials: reward {best.reward:.3f}, proxy return "
        f"{best.proxy_return:.2f}, latency {best.latency_s * 1e6:.2f} us")
    return MultiTrialOutcome(arch=arch, hardware=hardware,
                             env_steps=sum(r.env_steps for r in records), trials=len(records),
                             best_reward=best.reward)


def _run_trial(prep: Prepared, teacher: Teacher | None, stage: Path, sample: dict[str, Any],
               index: int, reference: Any, scale: float) -> TrialRecord:
    config = prep.config
    arch = prep.space.arch(sample["arch"], prep.obs_shape, name=f"trial{index:03d}")
    workload = arch.workload(prep.obs_shape, prep.action_dim)
    latency = prep.target.sample_latency(workload, sample.get("hw"))
    reference_latency = prep.target.sample_latency(reference, sample.get("hw"))
    if latency is None or reference_latency is None:
        return TrialRecord(index, sample, -math.inf, None, latency, reference_latency, 0)
    run_dir = stage / f"trial_{index:03d}"
    trial_cfg = prep.rl.model_copy(update={
        "total_steps": config.budget.proxy_steps, "arch": arch,
        "teacher": teacher.source if teacher is not None else None, "distill": config.distill})
    result = train(trial_cfg, run_dir, resume=(run_dir / "checkpoint.pt").is_file(),
                   progress=False)
    proxy = result.recent_return_mean if math.isfinite(result.recent_return_mean) else 0.0
    reward = proxy / scale - config.cost.lam * latency / reference_latency
    return TrialRecord(index, sample, reward, proxy, latency, reference_latency,
                       result.global_step)
