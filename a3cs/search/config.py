"""The one typed configuration of ``a3cs search`` (every setting, validated up front).

A run is one (method, seed, lambda): it searches (or takes) an agent architecture and the
hardware it runs on, retrains the chosen agent from scratch, evaluates its test score and
measures the pair on the ground-truth model (hw_sim for accelerators, the calibrated CPU model
for CPUs).  Methods share the budgets below, so their results are comparable:

* ``a3cs``: co-search (A2D + A3C-S): supernet weights, architecture logits and accelerator
  logits updated in turn; distillation from the teacher throughout.
* ``a3cs_no_distill``: the same without distillation (A2D's ablation).
* ``hand_designed``: the reference network of the observation type; accelerator-only search.
* ``sequential``: hardware-agnostic NAS (lambda = 0), then accelerator search for its result.
* ``random`` / ``evolution``: nni's Random and RegularizedEvolution strategies over the joint
  discrete space (architecture choices and accelerator parameters), each trial scored by a
  proxy (``proxy.kind``: a short RL training, or supervised distillation on the teacher's
  play) and the hardware term.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from a3cs.paths import DATA_DIR, portable_path, resolve_path
from a3cs.rl.batched import has_batched
from a3cs_common.errors import ConfigError
from a3cs_common.io import load_mapping
from a3cs_common.schema import FrozenModel, Seed, validate
from distill.schedules import DistillConfig

Method = Literal["a3cs", "a3cs_no_distill", "hand_designed", "sequential", "random", "evolution"]
METHODS: tuple[str, ...] = ("a3cs", "a3cs_no_distill", "hand_designed", "sequential", "random",
                            "evolution")
#: ``teacher: train``: train a teacher in the run even when the package ships one.
TRAIN_TEACHER = "train"


class Budget(FrozenModel):
    """Environment steps of each stage (all environments together)."""

    warmup_steps: int = Field(default=100_000, ge=0, description="supernet weights only, on "
                              "uniformly sampled paths")
    search_steps: PositiveInt = Field(default=300_000, description="alternating weight, "
                                      "architecture and accelerator updates (multi-trial "
                                      "methods: the total of their proxy trainings)")
    proxy_steps: PositiveInt = Field(default=30_000, description="training of one multi-trial "
                                     "candidate")
    trials: PositiveInt | None = Field(default=None, description="multi-trial methods: the "
                                       "trials; none: search_steps // proxy_steps (the "
                                       "environment steps of the co-search); with "
                                       "proxy.latency_band, the trained trials")
    samples_per_trial: PositiveInt = Field(default=50, description="multi-trial methods with "
                                           "proxy.latency_band: at most this many samples per "
                                           "trial (those outside the band are priced, not "
                                           "trained)")
    sample_retries: PositiveInt = Field(default=500, description="multi-trial methods: "
                                        "consecutive samples the strategy may find rejected "
                                        "(a network already tried, or outside "
                                        "proxy.latency_band with out_of_band: resample) before "
                                        "it stops; 500 is nni's patience, under which a uniform "
                                        "draw into an 8 % band (0.3 % of the space) stops after "
                                        "a few in-band networks; set it to trials * "
                                        "samples_per_trial to let the sample limit alone end "
                                        "the search")
    finalists: PositiveInt = Field(default=1, description="multi-trial methods: the proxy's "
                                   "best trials that are trained for finalist_steps (as the "
                                   "retrain trains: with distillation) and ranked by their "
                                   "score over finalist_episodes validation episodes (seeds apart "
                                   "from the test's); the best of them is the agent; 1: the "
                                   "proxy's best is the agent")
    finalist_steps: PositiveInt = Field(default=250_000, description="training of one finalist")
    finalist_episodes: PositiveInt = Field(default=20, description="validation episodes of one "
                                           "finalist")
    retrain_steps: PositiveInt = Field(default=1_000_000, description="the chosen agent, from "
                                       "scratch")
    eval_episodes: PositiveInt = Field(default=30, description="test episodes of the score")
    teacher_steps: PositiveInt = Field(default=3_000_000, description="training of the teacher "
                                       "when none is given")


class SupernetSettings(FrozenModel):
    """The differentiable search."""

    tau_start: PositiveFloat = Field(default=5.0, description="Gumbel-softmax temperature at "
                                     "the start of the search")
    tau_end: PositiveFloat = Field(default=0.5, description="... and at its end (exponential)")
    arch_lr: PositiveFloat = Field(default=0.05, description="Adam step of the architecture "
                                   "logits")
    arch_batch: PositiveInt = Field(default=512, description="samples of the rollout in one "
                                    "architecture step")
    accel_lr: PositiveFloat = Field(default=0.1, description="Adam step of the accelerator "
                                    "logits")
    distill_lr: PositiveFloat = Field(default=1e-3, description="Adam step of the "
                                      "distillation-only steps (supervised, so larger than "
                                      "PPO's)")
    distill_paths: int = Field(default=16, ge=0, description="extra distillation-only "
                               "minibatch steps per rollout, each on a freshly sampled path "
                               "(A2D's loss needs no on-policy data; trains the shared weights "
                               "for many paths at no environment cost)")
    arch_gradient: Literal["local_expectation", "straight_through"] = Field(
        default="local_expectation", description="local_expectation: per choice, the task loss "
        "of every option with the other choices at the sampled path, on the same minibatch "
        "(exact gradient of the expected loss in that choice; one forward pass per option); "
        "straight_through: the Gumbel-softmax gates' gradient")
    arch_paths: PositiveInt = Field(default=2, description="sampled paths the architecture "
                                    "step averages")
    weight_paths: Literal["sampled", "fair"] = Field(
        default="sampled", description="how the distillation-only steps pick their paths: "
        "sampled from the architecture distribution, or fair (FairNAS: every option of every "
        "choice equally often, whatever the distribution)")
    accelerator_research_every: int = Field(
        default=0, ge=0, description="Auto-NBA: every this many architecture steps, search "
        "the accelerator for the currently derived network alone and point the accelerator "
        "logits at the result (accelerator_research_logit on each chosen option), and give "
        "the final agent its own accelerator search instead of the logits' most probable "
        "configuration; 0: the joint logits alone")
    accelerator_research_logit: PositiveFloat = Field(
        default=4.0, description="the logit a re-search gives each chosen option (the others "
        "0): how firmly the expected latency then prices the re-searched accelerator")
    weight_sharing: Literal["shared", "per_format"] = Field(
        default="shared", description="shared: one weight per layer and operation, each format "
        "a projection of it; per_format: one copy per format type (few-shot NAS)")


class CostSettings(FrozenModel):
    """The hardware term of the architecture loss: ``lam * E[latency] / latency_ref``, the
    expected latency relative to the hand-designed network's on the same hardware."""

    lam: float = Field(default=1.0, ge=0.0, description="weight of the relative latency")
    target_fps: PositiveFloat | None = Field(
        default=None, description="adapt lam so that the expected FPS reaches this (lam then "
        "starts at `lam`)")
    target_speedup: PositiveFloat | None = Field(
        default=None, description="adapt lam so that the expected latency is the hand-designed "
        "network's divided by this (on the same hardware model)")
    lam_rate: PositiveFloat = Field(default=0.05, description="multiplicative step of lam's "
                                    "adaptation per architecture update")
    reference: Literal["same_hardware", "own_hardware"] = Field(
        default="same_hardware", description="the supernet search's latency_ref: the "
        "hand-designed network's latency on the accelerator the logits point at now "
        "(same_hardware), or on the accelerator an accelerator-only search gives it, fixed for "
        "the search (own_hardware: the comparison the evidence makes, so target_speedup is "
        "the FPS ratio the result is judged by)")
    tolerance: PositiveFloat | None = Field(
        default=None, description="with penalty: absolute, adapt lam as the Lagrange "
        "multiplier of |latency / target - 1| <= tolerance for the network the logits derive "
        "now (its latency on the target's current hardware): lam * exp(+lam_rate) after an "
        "architecture step that leaves it outside, lam * exp(-lam_rate) inside; none: lam "
        "stays fixed")
    tolerance_control: Literal["lagrange", "setpoint"] = Field(
        default="lagrange", description="how cost.tolerance holds the derived network within "
        "it: lagrange, lam as the multiplier above; setpoint, lam fixed and the latency the "
        "absolute penalty aims E[latency] at multiplied by exp(+lam_rate) after an "
        "architecture step whose derived network is faster than the tolerance allows, "
        "exp(-lam_rate) after one slower (E[latency] averages the architecture distribution, "
        "which late in a search is above the most probable network's latency, so a "
        "multiplier on a penalty E[latency] already meets does not move the derived network)")
    penalty: Literal["relative", "absolute"] = Field(
        default="relative", description="relative: lam * E[latency] / latency_ref, lam adapted "
        "towards the target (pushes latency down on both sides of it); absolute (TuNAS): "
        "lam * |E[latency] / target - 1|, which pulls towards the target from both sides "
        "(needs target_fps or target_speedup; lam stays fixed)")

    def target_latency_s(self, reference_latency_s: float) -> float | None:
        """The latency the cost aims at (s): ``1 / target_fps``, or the hand-designed
        network's ``reference_latency_s`` divided by ``target_speedup``; None without a
        target."""
        if self.target_fps:
            return 1.0 / self.target_fps
        return reference_latency_s / self.target_speedup if self.target_speedup else None

    def hardware_term(self, latency_s: Any, reference_latency_s: float,
                      target_scale: float = 1.0) -> Any:
        """The penalty ``lam`` multiplies (a float, or a tensor carrying gradients):
        ``latency / reference`` (relative) or ``|latency / (target * target_scale) - 1|``
        (absolute; ``target_scale``: the setpoint control's correction)."""
        if self.penalty == "absolute":
            target = self.target_latency_s(reference_latency_s)
            assert target is not None  # the validator below
            return abs(latency_s / (target * target_scale) - 1.0)
        return latency_s / reference_latency_s

    @model_validator(mode="after")
    def _absolute_needs_a_target(self) -> CostSettings:
        if self.penalty == "absolute" and self.target_fps is None and self.target_speedup is None:
            raise ConfigError("cost.penalty", "absolute", "relative, or absolute together with "
                              "cost.target_fps or cost.target_speedup (the latency it aims at)")
        if self.tolerance is not None and self.penalty != "absolute":
            raise ConfigError("cost.tolerance", self.tolerance, "null, or a fraction together "
                              "with cost.penalty: absolute")
        return self


class ProxySettings(FrozenModel):
    """How the multi-trial methods (``random``, ``evolution``) score a trial's agent."""

    kind: Literal["rl", "distill"] = Field(
        default="rl", description="rl: train it for budget.proxy_steps environment steps (with "
        "distillation), scored by its recent training return over the teacher's score; "
        "distill: train it by A2D's loss alone on states of the teacher's play (no "
        "environment steps), scored by the share of held-out states where it takes the "
        "teacher's action (distill.proxy: ranks architectures as stand-alone training does, "
        "Kendall tau 0.70-0.72 on Breakout where the supernet reached -0.37)")
    hardware: Literal["sampled", "searched"] = Field(
        default="sampled", description="sampled: the hardware is part of the joint sample and "
        "the trial's latency is its agent's on it, against the hand-designed network's on the "
        "same hardware; searched: each trial's network gets the accelerator search of its own "
        "(exhaustive or differentiable, as hand_designed's) and its measured latency there is "
        "set against the hand-designed network's on that network's own searched accelerator: "
        "what the comparison with hand_designed measures")
    latency_band: PositiveFloat | None = Field(
        default=None, description="feasibility first: only a trial whose latency is within "
        "this fraction of the latency target (|latency / target - 1| <= band; needs "
        "cost.target_fps or cost.target_speedup) is trained and scored by the proxy; the others "
        "score -1 - lam * hardware_term without training, below every trained one, so that "
        "evolution moves towards the target and spends its training on the band")
    out_of_band: Literal["score", "resample"] = Field(
        default="score", description="with latency_band, what a sample outside the band "
        "becomes: score: a trial scored -1 - lam * hardware_term, in evolution's population "
        "like any other; resample: rejected after its pricing, as Once-for-All's constrained "
        "evolution does: the strategy draws another sample (random) or mutation (evolution), so "
        "every sample in the population is in the band; budget.samples_per_trial then caps the "
        "distinct networks priced")
    distill_steps: PositiveInt = Field(default=1000, description="Adam steps of one distill "
                                       "proxy, over which a sparse candidate is pruned to its "
                                       "sparsity on the retraining's schedule (Breakout's "
                                       "ranking study: tau 0.52 at 500 steps, 0.69 at 1,000, "
                                       "0.71 at 2,000)")
    distill_batch: PositiveInt = Field(default=256, description="states per step")
    distill_lr: PositiveFloat = Field(default=1e-3, description="Adam's step size")
    train_states: PositiveInt = Field(default=16_384, description="states of the teacher's "
                                      "play the proxy trains on (collected once per run)")
    held_out_states: PositiveInt = Field(default=4_096, description="further states it is "
                                         "scored on")


class EvolutionSettings(FrozenModel):
    """The evolution method's population (nni's RegularizedEvolution: a population of
    ``budget.trials // 3``, tournaments of ``budget.trials // 6``)."""

    start: Literal["random", "hand_designed"] = Field(
        default="random", description="the first population: random samples of the space; "
        "hand_designed: mutations of the hand-designed network (the teacher's architecture), "
        "each choice redrawn with probability start_mutation_prob, as compression searches "
        "(AMC, HAQ) start from the network they compress")
    start_mutation_prob: float = Field(default=0.3, gt=0.0, le=1.0, description="with start: "
                                       "hand_designed, the chance that a choice is redrawn")
    mutation_prob: float = Field(default=0.05, gt=0.0, le=1.0, description="the chance that "
                                 "a mutation redraws a choice (nni's default)")


class SearchConfig(FrozenModel):
    """Every setting of ``a3cs search``."""

    method: Method = "a3cs"
    label: str | None = Field(default=None, description="the run's name in tables and plots "
                              "(a sweep's variant, e.g. evolution_distill); none: the method")
    env_id: str = Field(default="MinAtar/Breakout-v1", description="environment id")
    seed: Seed = 0
    target: str = Field(default="accelerator:zc706_cosearch_space.yaml",
                        description="accelerator:SPACE.yaml (an accelerator search space) or "
                        "cpu:PROFILE (a preset name or a calibrated profile file)")
    space: str | None = Field(default=None, description="agent search space YAML; none: the "
                              "default space of the observation type")
    teacher: str | None = Field(default=None, description="teacher checkpoint; none: the "
                                "package's teacher of env_id (a3cs/data/teachers/manifest.yaml), "
                                "or, for a game without one, the reference network trained for "
                                "budget.teacher_steps first; 'train': always train one")
    budget: Budget = Field(default_factory=Budget)
    supernet: SupernetSettings = Field(default_factory=SupernetSettings)
    cost: CostSettings = Field(default_factory=CostSettings)
    proxy: ProxySettings = Field(default_factory=ProxySettings)
    evolution: EvolutionSettings = Field(default_factory=EvolutionSettings)
    rl: dict[str, Any] = Field(default_factory=dict, description="PPO settings (TrainConfig "
                               "fields) for every training in the run; env_backend unset: "
                               "batched for a MinAtar game (the table's entry for it), "
                               "default otherwise")
    distill: DistillConfig = Field(default_factory=DistillConfig)
    torch_threads: PositiveInt = 1
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="where every stage trains and evaluates (auto: CUDA when "
        "present); the hardware models run on the CPU")
    checkpoint_every: PositiveInt = Field(default=20, description="search updates between "
                                          "checkpoints")

    @model_validator(mode="before")
    @classmethod
    def _environment_backend(cls, data: Any) -> Any:
        # on the batched games a search's finalists and retraining take 2.6-3.3x less time at
        # a like or higher score (docs/search.md, "The batched games"); the choice is written into the run's config.yaml, so a run re-made from it
        # trains as it did
        if not isinstance(data, dict) or not isinstance(data.get("rl", {}), dict):
            return data
        rl = data.get("rl") or {}
        env_id = data.get("env_id", cls.model_fields["env_id"].default)
        if "env_backend" in rl or not isinstance(env_id, str) or not has_batched(env_id):
            return data
        return {**data, "rl": {**rl, "env_backend": "batched"}}

    @model_validator(mode="after")
    def _check(self) -> SearchConfig:
        kind, _, rest = self.target.partition(":")
        if kind not in ("accelerator", "cpu") or not rest:
            raise ConfigError("target", self.target, "accelerator:SPACE.yaml or cpu:PROFILE")
        forbidden = {"env_id", "seed", "total_steps", "teacher", "distill", "arch",
                     "torch_threads", "device"} & set(self.rl)
        if forbidden:
            key = sorted(forbidden)[0]
            raise ConfigError(f"rl.{key}", self.rl[key], "set at the top level of the search "
                              "config, not under rl")
        if self.proxy.latency_band is not None and self.cost.target_fps is None and \
                self.cost.target_speedup is None:
            raise ConfigError("proxy.latency_band", self.proxy.latency_band, "unset, or set "
                              "together with cost.target_fps or cost.target_speedup (the "
                              "latency the band is around)")
        if self.cost.target_fps is not None and self.cost.target_speedup is not None:
            raise ConfigError("cost.target_speedup", self.cost.target_speedup,
                              "unset when cost.target_fps is set (one latency target)")
        if self.budget.finalists > 1 and self.method not in ("random", "evolution"):
            raise ConfigError("budget.finalists", self.budget.finalists, "1 for method "
                              f"{self.method} (finalists are the multi-trial methods' best "
                              "trials: random, evolution)")
        if self.supernet.tau_end > self.supernet.tau_start:
            raise ConfigError("supernet.tau_end", self.supernet.tau_end,
                              f"at most tau_start = {self.supernet.tau_start}")
        if self.method in ("random", "evolution") and self.proxy.kind == "rl" and \
                self.budget.trials is None and self.budget.proxy_steps > self.budget.search_steps:
            raise ConfigError("budget.proxy_steps", self.budget.proxy_steps,
                              f"at most budget.search_steps = {self.budget.search_steps}")
        return self

    @property
    def target_kind(self) -> Literal["accelerator", "cpu"]:
        return "accelerator" if self.target.startswith("accelerator:") else "cpu"

    @property
    def target_value(self) -> str:
        return self.target.partition(":")[2]

    @property
    def distills(self) -> bool:
        return self.method != "a3cs_no_distill"


def resolve_paths(config: SearchConfig, base: Path | None) -> SearchConfig:
    """``config`` with its target, space and teacher paths resolved (:func:`resolve_path`)."""
    kind, _, value = config.target.partition(":")
    updates: dict[str, Any] = {"target": f"{kind}:{resolve_path(value, base)}"}
    if config.space:
        updates["space"] = resolve_path(config.space, base)
    if config.teacher and config.teacher != TRAIN_TEACHER:
        updates["teacher"] = resolve_path(config.teacher, base)
    return config.model_copy(update=updates)


def portable_paths(config: SearchConfig) -> SearchConfig:
    """``config`` with its target, space and teacher paths made portable
    (:func:`portable_path`), for the run directory's config.yaml and results."""
    kind, _, value = config.target.partition(":")
    updates: dict[str, Any] = {"target": f"{kind}:{portable_path(value)}"}
    if config.space:
        updates["space"] = portable_path(config.space)
    if config.teacher and config.teacher != TRAIN_TEACHER:
        updates["teacher"] = portable_path(config.teacher)
    return config.model_copy(update=updates)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    """Deep-merge ``extra`` (CLI overrides, nested by dotted field) into ``base``."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def load_search_config(path: str | None, overrides: dict[str, Any] | None = None) -> SearchConfig:
    """The config in ``path`` (none: the embedded default) with CLI ``overrides`` on top.

    Relative paths in the file (target, space, teacher) are resolved against the file's folder.

    Raises:
        ConfigError: the file or a field is invalid.
    """
    source = path or str(DATA_DIR / "default_search.yaml")
    data = load_mapping(source, field="CONFIG")
    _merge(data, overrides or {})
    config = validate(SearchConfig, data, source=source)
    return resolve_paths(config, Path(source).resolve().parent)
