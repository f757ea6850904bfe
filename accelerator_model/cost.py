"""Hardware cost of a network on the configurations of an accelerator space: exact per
configuration, and differentiable in the architecture and accelerator probabilities.

:class:`HardwareCost` is built once per (space, searchable network) -- each searchable layer
slot lists its candidates as hw_sim layers (an empty candidate is a skip and costs nothing) --
and then

* :meth:`HardwareCost.configs` scores whole configurations for one architecture (the
  accelerator searches use it): latency, energy, FPS and validity with the reason;
* :meth:`HardwareCost.__call__` gives, for Gumbel-softmax probabilities over each slot's
  candidates and over each accelerator parameter's options, the expected cost and a
  straight-through sampled cost as torch scalars with gradients to both sets of logits.

Differentiable cost, in detail.  Let ``m(a, x)`` be the metric of architecture ``a`` on
configuration ``x``.  Layer costs add up, so ``m`` is computed from per-candidate latency and
energy tables that are linear in the architecture weights: exact for one-hot weights, a
plug-in value (the metric of expected latency and energy) for soft ones.  For the accelerator,
one configuration ``x`` is drawn from the parameter probabilities ``q`` (re-drawn until it fits
the budget and runs every candidate), and its *neighbours* -- ``x`` with one parameter ``j``
set to each of its options ``o`` -- are evaluated (``1 + sum_j (n_j - 1)`` configurations,
cached across calls).  Then

* ``sampled`` = ``m(a_hard, x)`` with straight-through gradients: to the architecture through
  the candidate tables, to parameter ``j``'s one-hot through ``d m / d h_j[o] = m(a, x_{j<-o})``
  (the multilinear extension of ``m`` over the one-hots, evaluated at the sample);
* ``expected`` = the mean over parameters ``j`` of ``E_j = sum_o q_j[o] m(p, x_{j<-o})`` with
  ``q_j`` renormalised over the options that give a valid configuration: each ``E_j`` is an
  unbiased estimate of ``E_{x ~ q}[m(p, x) | valid]`` with parameter ``j`` integrated out
  exactly ("local expectation gradients", Titsias & Lazaro-Gredilla, NeurIPS 2015); the
  gradient to ``q_j`` is that of ``E_j``.

Invalid configurations are never scored: they are re-drawn (counted in
:attr:`HardwareCost.rejections`) or left out of a parameter's options.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from a3cs_common.errors import ConfigError
from accelerator_model.encode import DEFAULT_LANES, HardwareBatch, LayerBatch
from accelerator_model.engines import REASONS
from accelerator_model.model import evaluate
from accelerator_model.resources import BUDGET_REASONS
from accelerator_model.space import AcceleratorSpace, Objective, assignment
from hw_sim.workload import Conv2d, Linear

LayerT = Conv2d | Linear


@dataclass(frozen=True)
class ConfigCost:
    """Whole-network figures of ``N`` configurations (``[N]`` tensors).

    Attributes:
        latency_cycles: cycles of one inference through every layer (chunks one after
            another), SCALE-Sim convention per layer as in :class:`hw_sim.report.SimReport`.
        bottleneck_cycles: cycles of the slowest chunk (the pipeline's period).
        latency_s: ``latency_cycles`` over the clock.
        energy_pj: energy of one inference.
        fps: inferences per second (``batch`` over the bottleneck period).
        objective: the space's objective (lower is better; NaN where invalid).
        valid: fits the budget and runs every layer.
        budget_reason: 0, or a key of :data:`accelerator_model.resources.BUDGET_REASONS`.
        layer_reason: 0, or a key of :data:`accelerator_model.engines.REASONS` (first failing
            layer).
    """

    latency_cycles: Tensor
    bottleneck_cycles: Tensor
    latency_s: Tensor
    energy_pj: Tensor
    fps: Tensor
    objective: Tensor
    valid: Tensor
    budget_reason: Tensor
    layer_reason: Tensor


@dataclass(frozen=True)
class CostOutput:
    """Result of :meth:`HardwareCost.__call__`.

    Attributes:
        expected: scalar, estimate of the expected cost (see the module docstring).
        sampled: scalar, cost of the hard-sampled architecture on the sampled configuration,
            with straight-through gradients.
        sample: the sampled configuration's option indices ``[len(space.parameters)]``.
        arch: the sampled candidate of each slot.
    """

    expected: Tensor
    sampled: Tensor
    sample: Tensor
    arch: tuple[int, ...]


class HardwareCost:
    """Cost of a searchable network on an accelerator space.

    Args:
        space: the accelerator space (its base hardware gives clock, budget, energy).
        slots: per searchable slot, its candidates; a candidate is a sequence of hw_sim layers
            (empty: skip, no cost).
        fixed: layers outside the search (stem, heads), always present.
        objective: metric to minimise (default: the space's).
        blocks: groups of parameter labels whose options the expected cost integrates jointly
            (parameters tightly coupled through the budget).  Default: per chunk, the
            parameters that set the PE array's DSP count (``pe_shape`` or ``pe_rows`` and
            ``pe_cols``, with ``word_bits``); every other parameter alone.
        dtype: precision of the batched model (float32: fast, ranks configurations the same).
        max_cached: configurations whose figures are kept between calls (oldest dropped).
        fixed_network: without slots, whether the ``fixed`` layers form one network (then
            whether their weights stay on chip is decided for all of them together, as hw_sim
            does) or are alternatives priced one by one, such as the candidate layers of an
            agent search space (then every layer is priced both streamed and on chip, and
            :meth:`per_layer` picks with ``weights_on_chip``).

    Raises:
        ConfigError: no layer at all, or a slot without candidates.
    """

    def __init__(self, space: AcceleratorSpace, slots: Sequence[Sequence[Sequence[LayerT]]],
                 fixed: Sequence[LayerT] = (), *, objective: Objective | None = None,
                 blocks: Sequence[Sequence[str]] | None = None,
                 dtype: torch.dtype = torch.float32, max_cached: int = 50_000,
                 fixed_network: bool = True) -> None:
        for s, candidates in enumerate(slots):
            if not candidates:
                raise ConfigError(f"slots[{s}]", [], "at least one candidate")
        layers: list[LayerT] = list(fixed)
        owner: list[tuple[int, int]] = [(-1, -1)] * len(fixed)
        for s, candidates in enumerate(slots):
            for c, candidate in enumerate(candidates):
                layers.extend(candidate)
                owner.extend([(s, c)] * len(candidate))
        if not layers:
            raise ConfigError("layers", [], "at least one layer (fixed or candidate)")
        self.space = space
        self.objective: Objective = objective or space.objective
        self.blocks = _blocks(space, blocks)
        self.dtype = dtype
        self.n_slots = len(slots)
        self.n_candidates = tuple(len(c) for c in slots)
        width = max(self.n_candidates, default=1)
        lanes = {p for par in space.parameters if par.name == "vector_lanes" for p in par.options}
        if space.base.one_by_n is not None:
            lanes.add(space.base.one_by_n.vector_lanes)
        self.layers = LayerBatch.from_layers(layers, lanes=lanes or DEFAULT_LANES[:1])
        n_layers = len(layers)
        # membership[u] -> flat slot-candidate index (or the fixed row S * width).
        self._flat = torch.tensor([s * width + c if s >= 0 else self.n_slots * width
                                   for s, c in owner], dtype=torch.long)
        self._width = width
        self._stored = torch.tensor([layer.stored_weight_words for layer in layers],
                                    dtype=torch.float64)
        rules = space.rules if space.chunk_count > 1 else ("by_kind",)
        self._chunk_of = torch.tensor([assignment(space, layers, rule) for rule in rules],
                                      dtype=torch.long)  # [rules, layers]
        self._keep = space.base.keep_weights_on_chip
        self._fixed_network = fixed_network
        self._clock_hz = space.base.clock_hz
        self._batch = layers[0].batch
        self._cache: dict[tuple[int, ...], tuple[Tensor, ...]] = {}
        self._evicted = 0
        self.max_cached = max_cached
        self.pair_evaluations = 0
        self.rejections = 0
        self._n_layers = n_layers

    # -- exact figures per configuration -----------------------------------------------------

    def _layer_figures(self, hws: Sequence[HardwareBatch], chunk_of: Tensor, on_chip: Tensor,
                       present: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Every (present) layer on its chunk of each configuration: ``(cycles [N, L],
        energy [N, L], reason [N])`` (reason of the first layer that cannot run);
        ``on_chip``: ``[N]`` bool, weights kept in the filter buffers."""
        n = chunk_of.shape[0]
        cycles = torch.zeros(n, self._n_layers, dtype=torch.float64)
        energy = torch.zeros_like(cycles)
        reasons = torch.zeros_like(cycles)
        for c, batch in enumerate(hws):
            mine = chunk_of == c  # [N, L]
            if present is not None:
                mine &= present
            config, layer = torch.nonzero(mine, as_tuple=True)
            est = evaluate(self.layers, batch, layer, config, on_chip[config], dtype=self.dtype)
            self.pair_evaluations += int(config.numel())
            cycles[config, layer] = torch.nan_to_num(est.total_cycles.double())
            energy[config, layer] = torch.nan_to_num(est.energy_pj.double())
            reasons[config, layer] = est.reason.double()
        first = reasons.gather(1, (reasons > 0).double().argmax(1, keepdim=True)).squeeze(1)
        return cycles, energy, first

    def _tables(self, index: Tensor) -> tuple[Tensor, ...]:
        """Per configuration (``[N]`` rows of ``index``), every layer evaluated with its weights
        streamed and kept on chip: ``(cycles [N, 2, L], energy [N, 2, L], chunk [N, L],
        filter_words [N, chunks], budget_reason [N], layer_reason [N, 2])``."""
        chunk_of = self._chunk_of[self.space.rule_index(index)]  # [N, L]
        hws = [self.space.encode(index, c) for c in range(self.space.chunk_count)]
        filter_words = torch.stack([h.filter_words for h in hws], dim=1)
        if self._keep and self.n_slots == 0 and self._fixed_network:
            # A fixed network: whether its weights stay on chip is known per configuration.
            on_chip = self._on_chip(torch.ones(self._n_layers, dtype=torch.float64), chunk_of,
                                    filter_words)
            states = [self._layer_figures(hws, chunk_of, on_chip)] * 2
        else:
            states = [self._layer_figures(hws, chunk_of,
                                          torch.zeros(len(index), dtype=torch.bool))]
            states.append(self._layer_figures(hws, chunk_of, torch.ones(len(index),
                                                                        dtype=torch.bool))
                          if self._keep else states[0])
        cycles, energy, reason = (torch.stack(x, dim=1) for x in zip(*states, strict=True))
        return cycles, energy, chunk_of, filter_words, self.space.budget_reason(index, hws), reason

    def configs(self, index: Tensor, arch: Sequence[int] | None = None) -> ConfigCost:
        """Exact figures of the configurations ``index`` (``[N, len(space.parameters)]``
        option indices) for the architecture ``arch`` (one candidate per slot; default the
        first of each)."""
        arch = tuple(arch) if arch is not None else (0,) * self.n_slots
        present = self._present(arch).double()  # [L]
        chunk_of = self._chunk_of[self.space.rule_index(index)]
        hws = [self.space.encode(index, c) for c in range(self.space.chunk_count)]
        filter_words = torch.stack([h.filter_words for h in hws], dim=1)
        on_chip = self._on_chip(present, chunk_of, filter_words)
        cycles, energy, reason = self._layer_figures(hws, chunk_of, on_chip, present > 0)
        return self._figures(cycles, energy, chunk_of, self.space.budget_reason(index, hws),
                             reason)

    def _present(self, arch: Sequence[int]) -> Tensor:
        if len(arch) != self.n_slots:
            raise ConfigError("arch", list(arch), f"one candidate index for each of the "
                              f"{self.n_slots} slots")
        wanted = {s * self._width + c for s, c in enumerate(arch)} | {self.n_slots * self._width}
        return torch.tensor([int(f) in wanted for f in self._flat.tolist()])

    def _on_chip(self, weights: Tensor, chunk_of: Tensor, filter_words: Tensor) -> Tensor:
        """``[N]`` whether the weights stay on chip (hw_sim's ``weights_stay_on_chip``, per
        chunk: every chunk must hold its layers' weights); ``weights``: ``[L]`` presence."""
        if not self._keep:
            return torch.zeros(chunk_of.shape[0], dtype=torch.bool)
        fits = torch.ones(chunk_of.shape[0], dtype=torch.bool)
        for c in range(filter_words.shape[1]):
            words = ((chunk_of == c).double() * (weights * self._stored)).sum(1)
            fits &= words <= filter_words[:, c]
        return fits

    def _figures(self, cycles: Tensor, energy: Tensor, chunk_of: Tensor, budget: Tensor,
                 layer_reason: Tensor) -> ConfigCost:
        per_chunk = torch.stack([(cycles * (chunk_of == c)).sum(1)
                                 for c in range(self.space.chunk_count)], dim=1)
        latency_cycles = per_chunk.sum(1)
        bottleneck = per_chunk.max(1).values
        latency_s = latency_cycles / self._clock_hz
        energy_pj = energy.sum(1)
        fps = self._batch * self._clock_hz / bottleneck
        valid = (budget == 0) & (layer_reason == 0)
        objective = self._metric(latency_s, energy_pj, fps)
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        return ConfigCost(latency_cycles, bottleneck, latency_s, energy_pj, fps,
                          torch.where(valid, objective, nan), valid, budget, layer_reason)

    def _metric(self, latency_s: Tensor, energy_pj: Tensor, fps: Tensor) -> Tensor:
        if self.objective == "latency":
            return latency_s
        if self.objective == "energy":
            return energy_pj
        if self.objective == "edp":
            return latency_s * energy_pj
        return 1.0 / fps

    def explain(self, cost: ConfigCost, i: int) -> str:
        """Why configuration ``i`` of ``cost`` is invalid."""
        budget = int(cost.budget_reason[i])
        if budget:
            return f"{BUDGET_REASONS[budget][0]}: needs more than the budget allows"
        field, allowed = REASONS[int(cost.layer_reason[i])]
        return f"a layer cannot run: {field} ({allowed})"

    # -- differentiable cost -----------------------------------------------------------------

    def _cached(self, index: Tensor) -> tuple[Tensor, ...]:
        """``_tables`` for each row of ``index``, evaluating only rows not seen before."""
        keys = [tuple(row) for row in index.tolist()]
        missing = [i for i, key in enumerate(keys) if key not in self._cache]
        if missing:
            tables = self._tables(index[missing])
            for j, i in enumerate(missing):
                self._cache[keys[i]] = tuple(t[j] for t in tables)
        out = tuple(torch.stack([self._cache[key][f] for key in keys]) for f in range(6))
        while len(self._cache) > self.max_cached:  # oldest first (insertion order)
            del self._cache[next(iter(self._cache))]
            self._evicted += 1
        return out

    def _valid_for_all(self, tables: tuple[Tensor, ...]) -> Tensor:
        """``[N]``: fits the budget and runs every candidate (so any architecture can be
        scored on it)."""
        _, _, _, _, budget, layer_reason = tables
        return (budget == 0) & (layer_reason == 0).all(1)

    @property
    def configs_scored(self) -> int:
        """Distinct configurations the differentiable cost has scored (cached or evicted)."""
        return len(self._cache) + self._evicted

    def best_scored(self, arch: Sequence[int] | None = None) -> tuple[Tensor, float] | None:
        """The best valid configuration among those the differentiable cost has scored (still
        cached) for architecture ``arch`` (default the first candidate of each slot):
        ``(option indices, objective)``, or None if none is valid."""
        if not self._cache:
            return None
        keys = list(self._cache)
        tables = tuple(torch.stack([self._cache[key][f] for key in keys]) for f in range(6))
        arch = tuple(arch) if arch is not None else (0,) * self.n_slots
        weights = [torch.nn.functional.one_hot(torch.tensor(a), n).double()
                   for a, n in zip(arch, self.n_candidates, strict=True)]
        metric = self._soft_metric(tables, weights).detach()
        metric = torch.where(self._valid_for_all(tables), metric, math.inf)
        i = int(metric.argmin())
        if not math.isfinite(float(metric[i])):
            return None
        return torch.tensor(keys[i]), float(metric[i])

    def is_valid(self, index: Tensor) -> bool:
        """Whether one configuration (option indices) fits the budget and runs every
        candidate layer."""
        return bool(self._valid_for_all(self._cached(index.reshape(1, -1)))[0])

    def draw(self, probs: Sequence[Tensor], generator: torch.Generator | None = None,
             max_tries: int = 10000) -> Tensor:
        """A configuration drawn from per-parameter probabilities, re-drawn until valid.

        Raises:
            ConfigError: no valid configuration after ``max_tries`` draws.
        """
        for _ in range(max_tries):
            index = torch.cat([torch.multinomial(p.detach().double(), 1, generator=generator)
                               for p in probs])
            if self.is_valid(index):
                return index
            self.rejections += 1
        raise ConfigError("accelerator space", self.space.config.name,
                          f"a space where some configuration is valid (none in {max_tries} "
                          "draws fits the budget and runs every candidate layer)")

    def __call__(self, arch_probs: Sequence[Tensor], accel_probs: Mapping[str, Tensor] |
                 Sequence[Tensor], *, arch_hard: Sequence[Tensor] | None = None,
                 accel_hard: Mapping[str, Tensor] | Sequence[Tensor] | None = None,
                 generator: torch.Generator | None = None) -> CostOutput:
        """Expected and straight-through sampled cost (see the module docstring).

        Args:
            arch_probs: per slot, ``[n_candidates]`` probabilities (e.g. softmax of logits).
            accel_probs: per space parameter (by label, or in order), ``[n_options]``
                probabilities.
            arch_hard: per slot, a one-hot (with straight-through gradient, e.g.
                ``F.gumbel_softmax(..., hard=True)``); drawn from ``arch_probs`` if None.
            accel_hard: per parameter, a one-hot likewise; drawn if None (re-drawn until
                valid).
            generator: random source for the draws.

        Returns:
            :class:`CostOutput`.

        Raises:
            ConfigError: wrong number of slots / parameters or wrong lengths, or the space has
                no valid configuration for these candidates.
        """
        q = self._by_parameter(accel_probs, "accel_probs")
        if len(arch_probs) != self.n_slots:
            raise ConfigError("arch_probs", len(arch_probs), f"{self.n_slots} tensors")
        for s, p in enumerate(arch_probs):
            if p.shape != (self.n_candidates[s],):
                raise ConfigError(f"arch_probs[{s}]", tuple(p.shape),
                                  f"shape ({self.n_candidates[s]},)")
        if arch_hard is None:
            arch_hard = [_straight_through(p, generator) for p in arch_probs]
        if accel_hard is None:
            index = self.draw(q, generator)
            hard = [_one_hot_like(qj, int(i)) + (qj - qj.detach())
                    for qj, i in zip(q, index, strict=True)]
        else:
            hard = self._by_parameter(accel_hard, "accel_hard")
            index = torch.tensor([int(h.argmax()) for h in hard])
        arch = tuple(int(a.argmax()) for a in arch_hard)

        grid, blocks = self._neighbours(index)
        tables = self._cached(grid)
        valid = self._valid_for_all(tables)
        if not bool(valid[0]):
            raise ConfigError("accel_hard", self.space.values(index),
                              "a configuration that fits the budget and runs every candidate")

        hard_metric = self._soft_metric(tables, arch_hard)  # [K], grads to arch one-hots
        soft_metric = self._soft_metric(tables, arch_probs)  # [K], grads to arch probs
        sampled = hard_metric[0]
        terms = []  # (expected value of a block, the same with only the q gradient)
        start = 1
        for members, combos in blocks:
            size = combos.shape[0]
            ok = valid[start:start + size]
            hard_m = hard_metric[start:start + size]
            soft_m = soft_metric[start:start + size]
            start += size
            one_hot = torch.ones(combos.shape[0], dtype=torch.float64)
            prob = torch.ones(combos.shape[0], dtype=torch.float64)
            for col, j in enumerate(members):
                one_hot = one_hot * hard[j][combos[:, col]]
                prob = prob * q[j][combos[:, col]]
            # Multilinear extension over the block's one-hots, at the sample.
            sampled = sampled + ((one_hot - one_hot.detach())
                                 * torch.where(ok, hard_m.detach(), 0.0)).sum()
            weights = prob * ok
            weights = weights / weights.sum()
            terms.append(((weights * torch.where(ok, soft_m, 0.0)).sum(),
                          (weights * torch.where(ok, soft_m.detach(), 0.0)).sum()))
        if terms:
            # Value and architecture gradient: the mean over blocks; gradient to each block's
            # probabilities: that of its own expectation.
            expected = torch.stack([full for full, _ in terms]).mean()
            boost = 1.0 - 1.0 / len(terms)
            for _, accel_only in terms:
                expected = expected + boost * (accel_only - accel_only.detach())
        else:
            expected = soft_metric[0]
        dtype = q[0].dtype if q and q[0].is_floating_point() else torch.float64
        return CostOutput(expected=expected.to(dtype), sampled=sampled.to(dtype), sample=index,
                          arch=arch)

    def _neighbours(self, index: Tensor) -> tuple[Tensor, list[tuple[tuple[int, ...], Tensor]]]:
        """The sample, then the sample with each block of parameters set to every combination
        of its options: ``(grid [K, len(parameters)], [(block members, combos)])``."""
        params = self.space.parameters
        rows = [index.reshape(1, -1)]
        blocks = []
        for members in self.blocks:
            combos = torch.cartesian_prod(*(torch.arange(len(params[j].options))
                                            for j in members)).reshape(-1, len(members))
            block = index.repeat(combos.shape[0], 1)
            block[:, list(members)] = combos
            rows.append(block)
            blocks.append((members, combos))
        return torch.cat(rows), blocks

    def per_layer(self, accel_probs: Mapping[str, Tensor] | Sequence[Tensor], *,
                  weights_on_chip: bool = False, generator: torch.Generator | None = None
                  ) -> Tensor:
        """Expected cost of every layer (the ``fixed`` layers, in order) under the accelerator
        distribution: ``[L]``, with gradients to the probabilities (estimated around one
        valid draw as in :meth:`__call__`).  The cost model to contract with architecture
        probabilities elsewhere (e.g. ``nas.expected_cost.CandidateTable``).

        Args:
            accel_probs: per parameter, ``[n_options]`` probabilities.
            weights_on_chip: price the layers with their weights already in the filter
                buffer (the base hardware's ``keep_weights_on_chip`` case) instead of fetched.
            generator: random source of the draw.

        Raises:
            ConfigError: the HardwareCost has searchable slots, or the objective is not
                additive over layers (latency, energy).
        """
        if self.n_slots:
            raise ConfigError("slots", self.n_slots, "none (per_layer prices fixed layers)")
        if self.objective not in ("latency", "energy"):
            raise ConfigError("objective", self.objective, "latency or energy (additive over "
                              "layers)")
        q = self._by_parameter(accel_probs, "accel_probs")
        index = self.draw(q, generator)
        grid, blocks = self._neighbours(index)
        cycles, energy, *_ = tables = self._cached(grid)
        valid = self._valid_for_all(tables)
        state = 1 if weights_on_chip and self._keep else 0
        metric = (cycles[:, state] / self._clock_hz if self.objective == "latency"
                  else energy[:, state])  # [K, L]
        dtype = q[0].dtype if q[0].is_floating_point() else torch.float64
        if not blocks:
            return metric[0].to(dtype)
        terms = []
        start = 1
        for members, combos in blocks:
            size = combos.shape[0]
            prob = torch.ones(size, dtype=torch.float64)
            for col, j in enumerate(members):
                prob = prob * q[j][combos[:, col]]
            ok = valid[start:start + size]
            weights = prob * ok
            weights = weights / weights.sum()
            terms.append(weights @ torch.where(ok[:, None], metric[start:start + size], 0.0))
            start += size
        stacked = torch.stack(terms)
        # Value: the mean over blocks; gradient to each block's probabilities: its own.
        return (stacked.detach().mean(0) + (stacked - stacked.detach()).sum(0)).to(dtype)

    def _by_parameter(self, values: Mapping[str, Tensor] | Sequence[Tensor], what: str
                      ) -> list[Tensor]:
        params = self.space.parameters
        if isinstance(values, Mapping):
            missing = [p.label for p in params if p.label not in values]
            unknown = [k for k in values if k not in {p.label for p in params}]
            if missing or unknown:
                raise ConfigError(what, sorted(values), "one tensor per parameter: "
                                  + ", ".join(p.label for p in params))
            out = [values[p.label] for p in params]
        else:
            out = list(values)
            if len(out) != len(params):
                raise ConfigError(what, len(out), f"{len(params)} tensors")
        for p, v in zip(params, out, strict=True):
            if v.shape != (len(p.options),):
                raise ConfigError(f"{what}[{p.label}]", tuple(v.shape),
                                  f"shape ({len(p.options)},)")
        return out

    def _soft_metric(self, tables: tuple[Tensor, ...], weights: Sequence[Tensor]) -> Tensor:
        """``[K]`` metric of each configuration for architecture weights (one ``[C_s]``
        tensor per slot): linear in the weights through latency and energy."""
        cycles, energy, chunk_of, filter_words, _, _ = tables
        k = cycles.shape[0]
        width = self._width
        flat = torch.zeros(self.n_slots * width + 1, dtype=torch.float64)
        if self.n_slots:
            padded = torch.stack([torch.nn.functional.pad(w.double(), (0, width - w.shape[0]))
                                  for w in weights])
            flat = torch.cat([padded.reshape(-1), torch.ones(1, dtype=torch.float64)])
        else:
            flat = flat + 1.0
        per_layer = flat[self._flat]  # [L]: the weight of the candidate owning each layer
        on_chip = self._on_chip(per_layer.detach(), chunk_of, filter_words).long()
        rows = torch.arange(k)
        cyc = cycles[rows, on_chip] * per_layer
        en = energy[rows, on_chip] * per_layer
        per_chunk = torch.stack([(cyc * (chunk_of == c)).sum(1)
                                 for c in range(self.space.chunk_count)], dim=1)
        latency_s = per_chunk.sum(1) / self._clock_hz
        fps = self._batch * self._clock_hz / per_chunk.max(1).values
        return self._metric(latency_s, en.sum(1), fps)


def _blocks(space: AcceleratorSpace, blocks: Sequence[Sequence[str]] | None
            ) -> tuple[tuple[int, ...], ...]:
    """Parameter indices of each block (every parameter in exactly one)."""
    labels = [p.label for p in space.parameters]
    if blocks is None:
        blocks = []
        for c in range(space.chunk_count):
            array = [p.label for p in space.parameters if p.chunk == c
                     and p.name in ("pe_shape", "pe_rows", "pe_cols", "word_bits")]
            if len(array) > 1:
                blocks.append(array)
    out: list[tuple[int, ...]] = []
    seen: set[str] = set()
    for b, block in enumerate(blocks):
        for label in block:
            if label not in labels or label in seen:
                raise ConfigError(f"blocks[{b}]", label,
                                  "labels of the space's parameters, each in one block: "
                                  + ", ".join(labels))
            seen.add(label)
        out.append(tuple(labels.index(label) for label in block))
    out += [(j,) for j, label in enumerate(labels) if label not in seen]
    return tuple(sorted(out))


def _one_hot_like(p: Tensor, i: int) -> Tensor:
    out = torch.zeros_like(p)
    out[i] = 1.0
    return out


def _straight_through(p: Tensor, generator: torch.Generator | None) -> Tensor:
    """A one-hot drawn from ``p`` whose gradient is that of ``p``."""
    i = int(torch.multinomial(p.detach().double(), 1, generator=generator))
    return _one_hot_like(p, i) + (p - p.detach())
