"""Accelerator search over a fixed workload: exhaustive, random and differentiable.

All three score configurations with :class:`~accelerator_model.cost.HardwareCost` and never
score an invalid one (over budget, or a layer that cannot run): exhaustive enumeration skips
configurations over budget before the model runs; random search draws until it has the
requested number of valid samples; the differentiable search re-draws invalid samples.

The differentiable search keeps one logit vector per accelerator parameter.  Each step draws a
hard configuration with Gumbel-softmax (``hard=True``: Gumbel-max on the logits), re-drawn
until valid, and descends the logarithm of the expected cost estimated around it by
:class:`~accelerator_model.cost.HardwareCost` (exact integration over one parameter block at a
time, invalid options left out; the logarithm makes the step size independent of the cost's
unit).  It ends with the better of the most probable option of every parameter (the derived
configuration) and the best configuration it evaluated on the way (its draws and their
neighbours, all scored already); both are reported.  (The straight-through
``sampled`` cost is not used here: it gives no signal away from invalid options, and the
search drifts into them.)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from a3cs_common.errors import ConfigError
from accelerator_model.cost import ConfigCost, HardwareCost


@dataclass
class SearchResult:
    """Outcome of one search.

    Attributes:
        method: "exhaustive", "random" or "differentiable".
        index: option indices of the chosen configuration.
        sample: the chosen configuration (parameter label -> value).
        objective: its objective (the space's metric; lower is better).
        latency_s, energy_pj, fps: its whole-network figures.
        config_evaluations: distinct configurations the model scored.
        pair_evaluations: (layer, configuration) pairs the model evaluated.
        rejected: configurations skipped as invalid (over budget or unrunnable).
        seconds: wall time of the search.
        history: best valid objective drawn after each step (differentiable), sample (random)
            or batch (exhaustive).
        extra: method-specific figures (e.g. the best sampled configuration).
    """

    method: str
    index: list[int]
    sample: dict[str, Any]
    objective: float
    latency_s: float
    energy_pj: float
    fps: float
    config_evaluations: int
    pair_evaluations: int
    rejected: int
    seconds: float
    history: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures (no history)."""
        return {"method": self.method, "sample": self.sample, "objective": self.objective,
                "latency_s": self.latency_s, "energy_pj": self.energy_pj, "fps": self.fps,
                "config_evaluations": self.config_evaluations,
                "pair_evaluations": self.pair_evaluations, "rejected": self.rejected,
                "seconds": self.seconds, **self.extra}


def _result(method: str, cost: HardwareCost, index: torch.Tensor, figures: ConfigCost,
            i: int, configs: int, rejected: int, start: float, history: list[float],
            extra: dict[str, Any] | None = None) -> SearchResult:
    row = [int(v) for v in index]
    return SearchResult(
        method=method, index=row, sample=cost.space.values(row),
        objective=float(figures.objective[i]), latency_s=float(figures.latency_s[i]),
        energy_pj=float(figures.energy_pj[i]), fps=float(figures.fps[i]),
        config_evaluations=configs, pair_evaluations=cost.pair_evaluations, rejected=rejected,
        seconds=time.perf_counter() - start, history=history, extra=extra or {})


def _no_valid(cost: HardwareCost, how: str) -> ConfigError:
    return ConfigError("space", cost.space.config.name,
                       f"a space with a configuration that fits the budget and runs every "
                       f"layer ({how})")


def exhaustive(cost: HardwareCost, batch: int = 16384,
               progress: Callable[[int], None] | None = None) -> SearchResult:
    """Score every configuration within budget; return the best.

    Raises:
        ConfigError: no configuration is valid.
    """
    start = time.perf_counter()
    best: tuple[float, torch.Tensor] | None = None
    scored = rejected = 0
    history: list[float] = []
    for index, examined in cost.space.within_budget(batch):
        rejected += examined - index.shape[0]
        if index.shape[0]:
            figures = cost.configs(index)
            scored += index.shape[0]
            rejected += int((~figures.valid).sum())
            objective = torch.where(figures.valid, figures.objective, math.inf)
            i = int(objective.argmin())
            if math.isfinite(float(objective[i])) and (best is None or objective[i] < best[0]):
                best = (float(objective[i]), index[i])
        history.append(best[0] if best else math.inf)
        if progress is not None:
            progress(examined)
    if best is None:
        raise _no_valid(cost, f"none of {cost.space.size}")
    final = best[1].reshape(1, -1)
    return _result("exhaustive", cost, best[1], cost.configs(final), 0, scored, rejected,
                   start, history)


def random_search(cost: HardwareCost, samples: int, seed: int = 0, batch: int = 1024,
                  max_draws: int | None = None) -> SearchResult:
    """Draw configurations uniformly until ``samples`` valid ones are scored; return the best.

    Raises:
        ConfigError: no valid configuration within ``max_draws`` (default ``100 * samples``).
    """
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    max_draws = max_draws or 100 * samples
    best: tuple[float, torch.Tensor] | None = None
    scored = rejected = drawn = 0
    history: list[float] = []
    while scored < samples and drawn < max_draws:
        index = cost.space.sample(min(batch, samples - scored), generator)
        drawn += index.shape[0]
        figures = cost.configs(index)
        rejected += int((~figures.valid).sum())
        for i in range(index.shape[0]):
            if bool(figures.valid[i]):
                scored += 1
                value = float(figures.objective[i])
                if best is None or value < best[0]:
                    best = (value, index[i])
                history.append(best[0])
    if best is None:
        raise _no_valid(cost, f"none of {drawn} random draws")
    return _result("random", cost, best[1], cost.configs(best[1].reshape(1, -1)), 0, drawn,
                   rejected, start, history)


@dataclass(frozen=True)
class DifferentiableOptions:
    """Settings of :func:`differentiable`.

    Attributes:
        steps: optimisation steps (one sampled configuration each).
        lr: Adam learning rate on the logits.
        seed: random seed of the Gumbel draws.
        max_redraws: draws allowed per step to find a valid configuration.
    """

    steps: int = 30
    lr: float = 0.5
    seed: int = 0
    max_redraws: int = 1000

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError("--steps", self.steps, "an integer >= 1")
        if not self.lr > 0:
            raise ConfigError("--lr", self.lr, "a number > 0")


def gumbel_softmax_hard(logits: torch.Tensor, generator: torch.Generator,
                        tau: float = 1.0) -> torch.Tensor:
    """``F.gumbel_softmax(logits, tau, hard=True)`` with noise from ``generator``: a one-hot of
    ``argmax(logits + Gumbel noise)`` whose gradient is that of the relaxed sample."""
    uniform = torch.rand(logits.shape, generator=generator, dtype=logits.dtype)
    noise = -torch.log(-torch.log(uniform.clamp_min(torch.finfo(logits.dtype).tiny)))
    soft = torch.softmax((logits + noise) / tau, dim=-1)
    hard = torch.zeros_like(soft)
    hard[soft.argmax()] = 1.0
    return hard - soft.detach() + soft


def differentiable(cost: HardwareCost, options: DifferentiableOptions = DifferentiableOptions(),
                   progress: Callable[[int], None] | None = None) -> SearchResult:
    """Gumbel-softmax search of the accelerator logits (see the module docstring).

    Raises:
        ConfigError: no valid configuration could be drawn.
    """
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(options.seed)
    logits = [torch.zeros(len(p.options), dtype=torch.float64, requires_grad=True)
              for p in cost.space.parameters]
    optimiser = torch.optim.Adam(logits, lr=options.lr)
    rejected = 0
    best: tuple[float, torch.Tensor] | None = None
    history: list[float] = []
    for step in range(options.steps):
        for _ in range(options.max_redraws):
            hard = [gumbel_softmax_hard(lg, generator) for lg in logits]
            index = torch.tensor([int(h.argmax()) for h in hard])
            if cost.is_valid(index):
                break
            rejected += 1
        else:
            raise _no_valid(cost, f"no valid draw in {options.max_redraws} at step {step}")
        probs = [torch.softmax(lg, dim=0) for lg in logits]
        out = cost([], probs, accel_hard=hard)
        value = float(out.sampled.detach())
        if best is None or value < best[0]:
            best = (value, index)
        history.append(best[0])
        optimiser.zero_grad()
        torch.log(out.expected).backward()
        optimiser.step()
        if progress is not None:
            progress(1)
    assert best is not None
    derived = torch.tensor([int(lg.argmax()) for lg in logits])
    scored = cost.best_scored()
    assert scored is not None  # the draws themselves are valid
    figures = cost.configs(torch.stack([derived, scored[0]]))
    extra = {"derived": cost.space.values(derived.tolist()),
             "derived_objective": float(figures.objective[0]),
             "best_evaluated": cost.space.values(scored[0].tolist()),
             "best_evaluated_objective": float(figures.objective[1])}
    better = not bool(figures.valid[0]) or float(figures.objective[1]) < float(
        figures.objective[0])
    chosen = 1 if better else 0
    extra["result"] = "best_evaluated" if better else "derived"
    index = scored[0] if better else derived
    return _result("differentiable", cost, index, figures, chosen, cost.configs_scored,
                   rejected, start, history, extra)
