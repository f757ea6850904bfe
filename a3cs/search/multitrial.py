"""Multi-trial baselines: nni's Random and RegularizedEvolution strategies over the joint
discrete space (agent architecture choices and accelerator parameters).

Each trial's agent is scored by a proxy (``proxy.kind``) and the hardware term::

    reward = quality - lam * hardware_term(latency, latency_ref)

* ``rl``: the agent trains for ``budget.proxy_steps`` environment steps (with distillation
  when there is a teacher); ``quality = return / |teacher score|``.
* ``distill``: the agent trains by A2D's loss alone on states of the teacher's play, collected
  once per run (:mod:`distill.proxy`), its 1xN and N:M layers pruned on the retraining's ramp
  as it trains (:func:`proxy_pruning`); ``quality`` is the share of held-out states where it
  takes the teacher's action.  No environment steps; ranks architectures the way stand-alone
  training does far better than a short RL run or the supernet (the ranking study).

With ``budget.finalists`` k > 1, the proxy's k best trained trials are then each trained for
``budget.finalist_steps`` as the retraining trains an agent and ranked over
``budget.finalist_episodes`` validation episodes (:func:`_finalist_round`, kept in
``finalists.json``); the best of them is the search's pick.

With ``proxy.hardware: sampled`` the hardware is part of the joint sample: ``latency`` is the
analytical model's latency of the trial's agent on the sampled hardware and ``latency_ref``
that of the hand-designed network on the same hardware; a hardware sample on which the agent
cannot run scores ``-inf`` without training.  With ``searched`` only the architecture is
sampled: each trial's network gets its own accelerator search (:meth:`Target.choose`) and
``latency`` is measured there (hw_sim), ``latency_ref`` is the hand-designed network's on its
own searched accelerator.  The hardware term is ``cost.penalty``'s: ``latency / latency_ref``
or ``|latency / target - 1|``.  With ``proxy.latency_band`` (feasibility first) a trial whose
latency is outside the band around the target is not trained: it scores
``-1 - lam * hardware_term``, below every trained trial, and costs only its pricing: the
budget then counts trained trials, so that a narrow band does not starve the search (sampling
stops after ``budget.samples_per_trial`` samples per trial all the same).  The number of trials
is ``budget.trials``, by default ``search_steps // proxy_steps``, so that the ``rl`` proxy
spends the environment steps of the differentiable co-search.  Samples that build the same
network (a skipped layer's width or format, say) are one trial: trained once, scored alike.

nni runs in-process (``SequentialExecutionEngine``: no experiment server, nothing listens on
a port).  Finished trials are cached in ``trials.json``, so a resumed run replays them without
training (the strategies are seeded and propose the same samples); ``scoring.json`` says which
version of the search (:data:`a3cs.search.prepare.SEARCH_SCORING`) priced and scored them, and
a run scored another way is not resumed.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

from torch import nn

from a3cs.rl.config import TrainConfig
from a3cs.rl.envs import make_env
from a3cs.rl.networks import build_agent
from a3cs.rl.train import prune_as_configured
from a3cs.search.config import SearchConfig
from a3cs.search.prepare import Prepared, RunLog, check_scoring
from a3cs.search.targets import HardwareChoice
from a3cs.search.teacher_play import collect_teacher_play
from a3cs_common.errors import ConfigError
from a3cs_common.io import atomic_write_text, load_json_records
from distill.proxy import TeacherPlay, distill_proxy
from distill.teacher import Teacher
from nas.arch import Arch, reference_arch
from nas.layers import has_prunable_layers

# nni 3.0 walks torch.nn on its first NAS import and warns "your PyTorch version might not be
# supported" for each class newer than it (torch 2.13's Buffer, LinearCrossEntropyOptions); it
# passes them through unwrapped, which is all the strategies here need, so a user's run does
# not print the alarm.
warnings.filterwarnings("ignore", message=r".* is found to be not a nn\.Module",
                        category=RuntimeWarning, module=r"nni\.nas\.nn\.pytorch")

@dataclass(frozen=True)
class TrialRecord:
    """One evaluated sample."""

    trial: int
    sample: dict[str, Any]
    reward: float
    proxy_return: float | None  # rl proxy: the recent training return
    latency_s: float | None
    reference_latency_s: float | None
    env_steps: int
    agreement: float | None = None  # distill proxy: held-out agreement with the teacher
    hardware: dict[str, Any] | None = None  # searched hardware: the trial's HardwareChoice


@dataclass(frozen=True)
class MultiTrialOutcome:
    arch: Arch
    hardware: HardwareChoice
    env_steps: int
    trials: int


class _Candidate:
    """A frozen joint sample (nni's engine keeps a weak reference to it)."""

    def __init__(self, sample: dict[str, Any]):
        self.sample = sample


def _joint_space(parts: dict[str, Any],
                 admit: Callable[[dict[str, Any]], str | None] | None = None) -> Any:
    """The strategies' search space: ``parts`` (``arch``, optionally ``hw``) as one sample.

    ``admit`` (the sample's values by part -> why it is rejected, or None) becomes an nni
    ``Constraint``: a rejected sample fails nni's validation, so the strategy draws another
    (``RetrySamplingHelper``) instead of submitting it, and it never enters evolution's
    population."""
    from nni.mutable import Constraint, ConstraintViolation, MutableDict

    class JointSpace(MutableDict):
        def freeze(self, sample: dict[str, Any]) -> _Candidate:
            return _Candidate({part: value for part, value in super().freeze(sample).items()
                               if part in parts})

    class Admitted(Constraint):
        def __init__(self) -> None:
            self.label = "admitted"

        def leaf_mutables(self, is_leaf: Callable[[Any], bool]) -> Iterable[Any]:
            for mutable in parts.values():
                yield from mutable.leaf_mutables(is_leaf)
            yield self

        def check_contains(self, sample: dict[str, Any]) -> Any:
            for mutable in parts.values():
                exception = mutable.check_contains(sample)
                if exception is not None:
                    return exception
            assert admit is not None
            reason = admit({part: mutable.freeze(sample) for part, mutable in parts.items()})
            return None if reason is None else ConstraintViolation(reason)

    return JointSpace(parts if admit is None else {**parts, "admitted": Admitted()})


def run_multitrial(prep: Prepared, teacher: Teacher | None, stage: Path, *, progress: bool,
                   log: RunLog) -> MultiTrialOutcome:
    """Run the method's nni strategy; return the chosen trial's architecture and hardware:
    the proxy's best, or with ``budget.finalists`` > 1 the best of the finalist round."""
    import nni
    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.space import RawFormatModelSpace
    from tqdm import tqdm

    config = prep.config
    stage.mkdir(parents=True, exist_ok=True)
    n_trials = config.budget.trials or max(1, config.budget.search_steps //
                                           config.budget.proxy_steps)
    parts: dict[str, Any] = {"arch": prep.space.mutable(prep.obs_shape)}
    hardware_space = prep.target.mutable()
    searched = config.proxy.hardware == "searched"
    if hardware_space is not None and not searched:
        parts["hw"] = hardware_space
    reference: Any = prep.workload(reference_arch(prep.obs_shape))
    if searched:  # the hand-designed network on its own searched hardware, measured once
        choice = prep.target.choose(reference, config.seed)
        reference = prep.target.measure(reference, choice).latency_s
        log(f"hand-designed network: {reference * 1e6:.2f} us on {choice.label}")

    scale, play = 1.0, None
    if config.proxy.kind == "distill":
        if teacher is None:
            raise ConfigError("proxy.kind", "distill", "rl for a run without a teacher")
        play = _teacher_play(prep, teacher)
        log(f"distill proxy: {len(play[0])} states of the teacher's play to train on, "
            f"{len(play[1])} held out")
    elif teacher is not None:
        score = prep.score_policy(teacher.model, 10, episode_seed=20_000 + config.seed)
        scale = max(abs(score.mean_return), 1e-6)
        log(f"teacher score {score.mean_return:.2f} normalises the proxy returns")

    cache_path = stage / "trials.json"
    check_scoring(stage, resumed_work=cache_path if cache_path.is_file() else None)
    records = _read_trials(cache_path) if cache_path.is_file() else []
    cached = {_trial_key(prep, r.sample): r for r in records}
    counts_trained = config.proxy.latency_band is not None
    resample = counts_trained and config.proxy.out_of_band == "resample"
    bar = tqdm(total=n_trials, unit="trial", disable=not progress, desc=config.method)
    budget = _TrialBudget(n_trials, config.budget.samples_per_trial * n_trials
                          if counts_trained else n_trials, count_pricings=resample)

    def keep(record: TrialRecord) -> None:
        records.append(record)
        atomic_write_text(cache_path, json.dumps([asdict(r) for r in records], indent=1))

    pricings: dict[str, _Pricing] = {}

    def pricing(key: str, sample: dict[str, Any]) -> _Pricing:
        if key not in pricings:
            pricings[key] = _price(prep, sample, reference)
        return pricings[key]

    def admit(sample: dict[str, Any]) -> str | None:
        sample = _without_budget(sample)
        key = _trial_key(prep, sample)
        if not budget.price(key):
            return f"the sample limit ({budget.max_samples}) was reached"
        if key not in cached:
            untrained = _untrained(prep, sample, len(records), pricing(key, sample))
            if untrained is None:
                return None
            cached[key] = untrained
            keep(untrained)
        return None if _trained(cached[key]) else "outside proxy.latency_band"

    def evaluate(candidate: _Candidate) -> None:
        sample = _without_budget(candidate.sample)
        key = _trial_key(prep, sample)
        if key not in cached:
            cached[key] = _run_trial(prep, teacher, stage, sample, len(records),
                                     pricing(key, sample), scale, play)
            keep(cached[key])
        record = cached[key]
        if (_trained(record) or not counts_trained) and budget.count(key):
            bar.update(1)
        bar.set_postfix(reward=f"{record.reward:.3f}", refresh=False)
        nni.report_final_result(record.reward if math.isfinite(record.reward) else -1e9)

    start = None
    if config.method == "evolution" and config.evolution.start == "hand_designed":
        start = prep.space.sample_of(reference_arch(prep.obs_shape), prep.obs_shape)
        if start is None:
            raise ConfigError("evolution.start", "hand_designed", "random: the agent space "
                              "cannot express the hand-designed network")
        log("evolution starts from mutations of the hand-designed network")
    strategy = _strategy(config, start, n_trials)
    nni_logger = logging.getLogger("nni")
    level = nni_logger.level
    nni_logger.setLevel(logging.WARNING)
    try:
        space = _joint_space(parts, admit if resample else None)
        strategy.initialize(RawFormatModelSpace(space, FunctionalEvaluator(evaluate)),
                            budget.engine())
        strategy.run()
    finally:
        nni_logger.setLevel(level)
        bar.close()
    if counts_trained and budget.trials_done < n_trials:
        why = (f"the sample limit ({budget.max_samples}) was reached"
               if not resample or budget.pricings >= budget.max_samples else
               "the strategy found no new network in the band within nni's retries")
        log(f"{budget.trials_done} of {n_trials} trials trained: {why}, the other "
            f"{len(records) - budget.trials_done} distinct networks sampled were outside "
            "proxy.latency_band")
    elif resample:
        log(f"{budget.trials_done} trials trained; {len(records) - budget.trials_done} other "
            "distinct networks sampled were outside proxy.latency_band (priced, resampled)")
    best = max(records, key=lambda r: r.reward)
    if not math.isfinite(best.reward):
        raise ConfigError("target", config.target, "hardware on which some sampled agent can "
                          f"run (none of {len(records)} trials could)")
    finalist_steps = 0
    if config.budget.finalists > 1:
        best, finalist_steps = _finalist_round(prep, teacher, stage, records, best,
                                               progress=progress, log=log)
    arch = prep.space.arch(best.sample["arch"], prep.obs_shape,
                           name=f"{config.method}_seed{config.seed}")
    hardware = (HardwareChoice(**best.hardware) if best.hardware is not None else
                prep.target.choice_for_sample(best.sample.get("hw"), prep.workload(arch)))
    quality = (f"agreement {best.agreement:.3f}" if best.agreement is not None else
               f"proxy return {best.proxy_return:.2f}" if best.proxy_return is not None else
               "not trained: no trial's latency was within proxy.latency_band of the target")
    log(f"{'chosen finalist' if finalist_steps else 'best'} of {len(records)} trials: "
        f"reward {best.reward:.3f}, {quality}, latency "
        f"{best.latency_s * 1e6:.2f} us")
    play_steps = 0 if play is None else len(play[0]) + len(play[1])  # the teacher's
    return MultiTrialOutcome(arch=arch, hardware=hardware,
                             env_steps=(play_steps + sum(r.env_steps for r in records)
                                        + finalist_steps),
                             trials=len(records))


#: What :func:`_finalist_round` reads back of each finalist it trained.
_FINALIST_KEYS = ("trial", "validation_mean", "env_steps")


def _read_trials(path: Path) -> list[TrialRecord]:
    """The trials a killed search recorded in ``path`` (its ``trials.json``).

    Raises:
        ConfigError: the file was damaged after the search wrote it.
    """
    expected = "the search's trials.json"
    required = tuple(f.name for f in fields(TrialRecord) if f.default is MISSING)
    rows = load_json_records(path, field="--resume", expected=expected, keys=required)
    try:
        return [TrialRecord(**row) for row in rows]
    except TypeError:  # a key TrialRecord does not have
        raise ConfigError("--resume", str(path), f"{expected} with the fields of "
                          "a3cs.search.multitrial.TrialRecord: restore it or start a new "
                          "--out directory") from None


def _finalist_round(prep: Prepared, teacher: Teacher | None, stage: Path,
                    records: list[TrialRecord], best: TrialRecord, *, progress: bool,
                    log: RunLog) -> tuple[TrialRecord, int]:
    """The proxy's ``budget.finalists`` best trained trials, each trained for
    ``budget.finalist_steps`` as the retrain trains an agent (with distillation when there is a
    teacher) and scored over ``budget.finalist_episodes`` validation episodes, whose seeds are
    apart from the test's: the proxy ranks many networks cheaply, a short real training ranks
    its few best.  Returns the finalist with the best validation score (ties: the proxy's
    order; ``best``, the proxy's pick, when no trial was trained) and the environment steps
    the finalists trained for (the validation episodes' steps are not counted, as the test
    episodes' are not).  Each finalist's result is kept in ``finalists.json``, so a resumed
    search trains only those not finished."""
    config = prep.config
    ranked = sorted((r for r in records if _trained(r) and math.isfinite(r.reward)),
                    key=lambda r: -r.reward)[:config.budget.finalists]
    if not ranked:
        return best, 0
    path = stage / "finalists.json"
    results = (load_json_records(path, field="--resume", expected="the search's finalists.json",
                                 keys=_FINALIST_KEYS) if path.is_file() else [])
    done = {result["trial"] for result in results}
    for place, record in enumerate(ranked, 1):
        if record.trial in done:
            continue
        arch = prep.space.arch(record.sample["arch"], prep.obs_shape,
                               name=f"finalist{record.trial:03d}")
        trained = prep.train_agent(arch, config.budget.finalist_steps, teacher,
                                   stage / f"finalist_{record.trial:03d}", progress=progress)
        score = prep.score_agent(trained.checkpoint, config.budget.finalist_episodes,
                                 episode_seed=30_000 + config.seed, field="finalist checkpoint")
        results.append({"trial": record.trial, "reward": record.reward,
                        "validation_mean": score.mean_return,
                        "validation_std": score.std_return, "episodes": score.episodes,
                        "env_steps": trained.global_step})
        atomic_write_text(path, json.dumps(results, indent=1) + "\n")
        log(f"finalist {place} of {len(ranked)}: trial {record.trial} (proxy reward "
            f"{record.reward:.3f}) scores {score.mean_return:.2f} +- {score.std_return:.2f} "
            f"over {score.episodes} validation episodes after {trained.global_step:,} steps")
    by_trial = {result["trial"]: result for result in results}
    chosen = max(ranked, key=lambda r: (by_trial[r.trial]["validation_mean"],
                                        -ranked.index(r)))
    log(f"finalists: trial {chosen.trial} chosen (validation "
        f"{by_trial[chosen.trial]['validation_mean']:.2f}; the proxy's best, trial "
        f"{ranked[0].trial}, {by_trial[ranked[0].trial]['validation_mean']:.2f})")
    return chosen, sum(int(by_trial[r.trial]["env_steps"]) for r in ranked)


def _strategy(config: SearchConfig, start: dict[str, Any] | None, n_trials: int) -> Any:
    """nni's Random or RegularizedEvolution with the run's settings and patience."""
    from nni.nas.strategy import Random
    from nni.nas.strategy.utils import RetrySamplingHelper

    strategy = (Random(seed=config.seed) if config.method == "random" else
                _evolution(start, config.evolution.start_mutation_prob,
                           population_size=max(4, n_trials // 3),
                           sample_size=max(2, n_trials // 6),
                           mutation_prob=config.evolution.mutation_prob, seed=config.seed))
    # nni 3.0 takes no patience argument: both strategies sample through this helper
    strategy._retry_helper = RetrySamplingHelper(config.budget.sample_retries)
    return strategy


def _evolution(start: dict[str, Any] | None, start_mutation_prob: float, **settings: Any) -> Any:
    """nni's RegularizedEvolution; with ``start`` (an architecture sample), its first
    population is drawn around it instead of uniformly."""
    from nni.mutable import MutableAnnotation
    from nni.nas.strategy import RegularizedEvolution
    from nni.nas.strategy.utils import DuplicationError
    from numpy.random import RandomState

    class Evolution(RegularizedEvolution):
        def __init__(self) -> None:
            super().__init__(**settings)
            self._start_state = RandomState(settings.get("seed"))
            self._started: set[str] = set()

        def random(self) -> Any:
            if start is None:
                return super().random()
            sample: dict[str, Any] = {}
            for key, mutable in self.model_space.simplify().items():
                if isinstance(mutable, MutableAnnotation):
                    continue
                keep = key in start and self._start_state.uniform(0, 1) >= start_mutation_prob
                sample[key] = start[key] if keep else mutable.random(
                    random_state=self._start_state)
            seen = json.dumps(sample, sort_keys=True, default=str)
            if seen in self._started:
                raise DuplicationError(sample)
            self._started.add(seen)
            return self.model_space.freeze(sample)

    return Evolution()


def _without_budget(sample: dict[str, Any]) -> dict[str, Any]:
    """A joint sample without the ``budget`` entries nni's evaluator adds."""
    return {part: {k: v for k, v in values.items() if k != "budget"}
            for part, values in sample.items()}


def _trained(record: TrialRecord) -> bool:
    return record.agreement is not None or record.proxy_return is not None


class _TrialBudget:
    """The search's budget: ``trials`` distinct trials, and at most ``max_samples`` samples:
    the strategy's submissions, or with ``count_pricings`` the distinct networks priced (the
    rejected ones included)."""

    def __init__(self, trials: int, max_samples: int, *, count_pricings: bool = False):
        self.trials, self.max_samples = trials, max_samples
        self.count_pricings = count_pricings
        self._done: set[str] = set()
        self._priced: set[str] = set()

    @property
    def trials_done(self) -> int:
        return len(self._done)

    def count(self, key: str) -> bool:
        """Count the trial ``key``; whether it is new."""
        new = key not in self._done
        self._done.add(key)
        return new

    @property
    def pricings(self) -> int:
        return len(self._priced)

    def price(self, key: str) -> bool:
        """Count a pricing of ``key``; whether the limit allows it (a network already priced
        is free)."""
        if key in self._priced:
            return True
        if len(self._priced) >= self.max_samples:
            return False
        self._priced.add(key)
        return True

    def engine(self) -> Any:
        from nni.nas.execution import SequentialExecutionEngine

        budget = self

        class Engine(SequentialExecutionEngine):
            def budget_available(self) -> bool:
                return budget.trials_done < budget.trials and super().budget_available()

        return Engine(max_model_count=None if self.count_pricings else self.max_samples)


def _trial_key(prep: Prepared, sample: dict[str, Any]) -> str:
    """What a trial's result depends on: the network the sample builds (not the choices it
    ignores, nor where its skip layers sit: the identity anywhere in the trunk builds the
    same network) and the sampled hardware, if any."""
    arch = prep.space.arch(sample["arch"], prep.obs_shape, name="trial")
    layers = [layer.model_dump(mode="json") for layer in arch.layers if layer.op != "skip"]
    return json.dumps({"arch": {**arch.model_dump(mode="json"), "layers": layers},
                       "hw": sample.get("hw")}, sort_keys=True)


def _teacher_play(prep: Prepared, teacher: Teacher) -> tuple[TeacherPlay, TeacherPlay]:
    """The distill proxy's training and held-out states (seeded by the run's seed)."""
    settings = prep.config.proxy
    play = collect_teacher_play(teacher.model, prep.config.env_id,
                                settings.train_states + settings.held_out_states,
                                seed=50_000 + prep.config.seed, policy_seed=prep.config.seed)
    return play.split(settings.train_states)


@dataclass(frozen=True)
class _Pricing:
    """A sample's latency and the hand-designed one's it is set against (None: cannot run)."""

    latency_s: float | None
    reference_latency_s: float | None
    hardware: dict[str, Any] | None  # searched hardware: the trial's HardwareChoice


def _price(prep: Prepared, sample: dict[str, Any], reference: Any) -> _Pricing:
    """``reference`` is the hand-designed workload (sampled hardware) or its measured latency
    in seconds on its own searched hardware (searched hardware)."""
    arch = prep.space.arch(sample["arch"], prep.obs_shape, name="trial")
    workload = prep.workload(arch)
    if prep.config.proxy.hardware == "searched":
        choice = prep.target.choose(workload, prep.config.seed)
        return _Pricing(prep.target.measure(workload, choice).latency_s, reference,
                        asdict(choice))
    return _Pricing(prep.target.sample_latency(workload, sample.get("hw")),
                    prep.target.sample_latency(reference, sample.get("hw")), None)


def _untrained(prep: Prepared, sample: dict[str, Any], index: int,
               pricing: _Pricing) -> TrialRecord | None:
    """The record of a trial not worth a training (its agent cannot run on the hardware, or
    its latency is outside ``proxy.latency_band``); None for one to train."""
    config = prep.config
    latency, reference_latency = pricing.latency_s, pricing.reference_latency_s
    if latency is None or reference_latency is None:
        return TrialRecord(index, sample, -math.inf, None, latency, reference_latency, 0)
    band = config.proxy.latency_band
    if band is None:
        return None
    target = config.cost.target_latency_s(reference_latency)
    assert target is not None  # checked with the config
    if abs(latency / target - 1.0) <= band:
        return None
    penalty = config.cost.lam * config.cost.hardware_term(latency, reference_latency)
    return TrialRecord(index, sample, -1.0 - penalty, None, latency, reference_latency, 0, None,
                       pricing.hardware)


def _run_trial(prep: Prepared, teacher: Teacher | None, stage: Path, sample: dict[str, Any],
               index: int, pricing: _Pricing, scale: float,
               play: tuple[TeacherPlay, TeacherPlay] | None) -> TrialRecord:
    """One trial: its record without training if :func:`_untrained` says so, else trained by
    the proxy and scored."""
    untrained = _untrained(prep, sample, index, pricing)
    if untrained is not None:
        return untrained
    config = prep.config
    latency, reference_latency = pricing.latency_s, pricing.reference_latency_s
    assert latency is not None and reference_latency is not None
    penalty = config.cost.lam * config.cost.hardware_term(latency, reference_latency)
    arch = prep.space.arch(sample["arch"], prep.obs_shape, name=f"trial{index:03d}")
    if play is not None:
        agreement = _distill_trial(prep, arch, play)
        return TrialRecord(index, sample, agreement - penalty, None, latency,
                           reference_latency, 0, agreement, pricing.hardware)
    result = prep.train_agent(arch, config.budget.proxy_steps, teacher,
                              stage / f"trial_{index:03d}", progress=False)
    proxy = result.recent_return_mean if math.isfinite(result.recent_return_mean) else 0.0
    return TrialRecord(index, sample, proxy / scale - penalty, proxy, latency,
                       reference_latency, result.global_step, None, pricing.hardware)


def _distill_trial(prep: Prepared, arch: Arch, play: tuple[TeacherPlay, TeacherPlay]) -> float:
    """The distill proxy's agreement of a fresh agent of ``arch`` (initialised from the run's
    seed) with the teacher."""
    config = prep.config
    probe = make_env(config.env_id, 1, config.seed)
    try:
        model = build_agent(arch, probe.single_observation_space, probe.single_action_space,
                            seed=config.seed).to(prep.device)
    finally:
        probe.close()
    train_play, held_out = (TeacherPlay(p.obs.to(prep.device), p.teacher_dist.to(prep.device),
                                        p.teacher_value.to(prep.device)) for p in play)
    score = distill_proxy(model, train_play, held_out, kind=model.kind,
                          steps=config.proxy.distill_steps, batch_size=config.proxy.distill_batch,
                          lr=config.proxy.distill_lr, actor_coef=config.distill.actor_coef,
                          critic_coef=config.distill.critic_coef, seed=config.seed,
                          before_step=proxy_pruning(model, prep.rl))
    return score.agreement


def proxy_pruning(model: nn.Module, rl: TrainConfig, *,
                  start: bool = False) -> Callable[[float], None] | None:
    """What the distill proxy calls before each step (with its progress in [0, 1)) so that a
    sparse candidate (1xN, N:M layers) is scored at the sparsity its retraining gives it,
    reached on the cubic ramp of ``rl``'s sparsity_start/end (with its block_pruning and
    pruned_gradient; a ``reward_aware`` schedule, which follows a return the proxy does not
    have, is ramped the same way); None for a model with no prunable layer.  Trained dense, a layer at 25 %
    density would score as a dense one while being priced as a sparse one.  ``start``: at the
    target sparsity from the first step instead (the ranking study's comparison)."""
    if not has_prunable_layers(model):
        return None

    def prune(progress: float) -> None:
        prune_as_configured(model, rl, 1.0 if start else progress)

    return prune
