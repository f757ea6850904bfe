"""An accelerator drawn from an accelerator search space (:mod:`accelerator_model.space`).

During the co-search every space parameter has logits.  Candidate layers are priced by the
batched analytical model under the accelerator distribution
(:meth:`accelerator_model.cost.HardwareCost.per_layer`: one valid configuration drawn, its
neighbours evaluated, each parameter integrated out around the draw), which gives gradients
to both the architecture probabilities (through :class:`nas.expected_cost.CandidateTable`)
and the accelerator logits.  When the base hardware keeps weights on chip, candidate layers
are priced with their weights in the filter buffer, like the hand-designed reference network
whose weights fit (a DRL agent's weights are small); whether a whole path's weights fit
depends on the path, which the per-layer expectation cannot see, so the final choice of
hardware and the hw_sim measurement apply ``keep_weights_on_chip`` exactly.

For a fixed workload the hardware is the exhaustive optimum of the space (or the
differentiable search's pick when the space is too large to enumerate), and every result is
measured on hw_sim, the cycle-level ground truth.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from a3cs.search.targets import HardwareChoice, Measurement
from a3cs_common.errors import ConfigError
from hw_sim.hardware import Hardware
from hw_sim.workload import Workload
from nas.expected_cost import CandidateTable

EXHAUSTIVE_LIMIT = 500_000  # configurations: above this, the differentiable search picks
RANKED = 4096  # most probable configurations checked when the co-searched one cannot run


class AcceleratorTarget:
    """A searchable accelerator (a single accelerator: one chunk).

    Args:
        space_path: accelerator space YAML.
        seed: seed of the configuration draws.

    Raises:
        ConfigError: the space cannot be read, or it is chunked.
    """

    kind = "accelerator"

    def __init__(self, space_path: str, seed: int = 0):
        from accelerator_model.space import AcceleratorSpace

        self.space = AcceleratorSpace.from_yaml(space_path, field="target")
        if self.space.chunk_count != 1:
            raise ConfigError("target", space_path, "a single-accelerator space (chunks.count "
                              "1) for a3cs search; chunked spaces work with a3cs accel-search")
        self.label = f"accelerator:{self.space.config.name}"
        self.logits = nn.ParameterList([nn.Parameter(torch.zeros(len(p.options)))
                                        for p in self.space.parameters])
        self.generator = torch.Generator().manual_seed(seed)
        self._table: CandidateTable | None = None
        self._cost: Any = None
        self._workload_costs: dict[str, Any] = {}

    def probabilities(self) -> list[torch.Tensor]:
        return [torch.softmax(logit, 0) for logit in self.logits]

    def _cost_for(self, layers: list[Any], *, fixed_network: bool = True) -> Any:
        from accelerator_model.cost import HardwareCost

        return HardwareCost(self.space, [], layers, objective="latency",
                            fixed_network=fixed_network)

    # -- the search --------------------------------------------------------------------------

    def prepare(self, table: CandidateTable) -> None:
        self._table = table
        self._cost = self._cost_for(table.layers, fixed_network=False)

    def expected_latency(self, probabilities: dict[str, torch.Tensor]) -> torch.Tensor:
        assert self._table is not None, "prepare() first"
        costs = self._cost.per_layer(self.probabilities(), generator=self.generator,
                                     weights_on_chip=self.space.base.keep_weights_on_chip)
        return self._table.expected(probabilities, costs.to(torch.float32))

    def workload_latency(self, workload: Workload) -> float:
        key = workload.model_dump_json()
        if key not in self._workload_costs:
            self._workload_costs[key] = self._cost_for(list(workload.layers))
        with torch.no_grad():
            probs = [p.detach() for p in self.probabilities()]
            return float(self._workload_costs[key].per_layer(probs,
                                                             generator=self.generator).sum())

    def parameters(self) -> list[nn.Parameter]:
        return list(self.logits)

    def hardware_loss(self, probabilities: dict[str, torch.Tensor]) -> torch.Tensor | None:
        return self.expected_latency(probabilities)

    # -- hardware for a workload ---------------------------------------------------------------

    def _choice(self, index: list[int], how: str, evaluations: int = 0) -> HardwareChoice:
        sample = self.space.values(index)
        hw = self.space.hardware(sample)[0]
        return HardwareChoice(label=f"{self.space.config.name}: "
                              + ", ".join(f"{k}={v}" for k, v in sample.items()),
                              description=hw.model_dump(mode="json", exclude_none=True),
                              how=how, evaluations=evaluations)

    def _searched(self, workload: Workload, seed: int) -> tuple[list[int], HardwareChoice]:
        """The accelerator-only search for ``workload``: its option indices and choice."""
        from accelerator_model.search import DifferentiableOptions, differentiable, exhaustive

        cost = self._cost_for(list(workload.layers))
        if self.space.size <= EXHAUSTIVE_LIMIT:
            result = exhaustive(cost)
        else:
            result = differentiable(cost, DifferentiableOptions(seed=seed))
        index = [int(i) for i in result.index]
        return index, self._choice(index, f"{result.method} accelerator search over "
                                   f"{result.config_evaluations:,} configurations",
                                   result.config_evaluations)

    def choose(self, workload: Workload, seed: int) -> HardwareChoice:
        return self._searched(workload, seed)[1]

    def searched_latency(self, workload: Workload, seed: int) -> float:
        index, _ = self._searched(workload, seed)
        latency = self.sample_latency(workload, self.space.values(index))
        assert latency is not None  # the search only returns configurations that run it
        return latency

    def research(self, workload: Workload, seed: int, logit: float) -> HardwareChoice:
        """Auto-NBA's re-search: the accelerator-only search for ``workload``, and the logits
        set to point at its result (``logit`` on each chosen option, 0 on the others), from
        where the accelerator step goes on."""
        index, choice = self._searched(workload, seed)
        with torch.no_grad():
            for logits, option in zip(self.logits, index, strict=True):
                logits.zero_()
                logits[option] = logit
        return choice

    def derived_for(self, workload: Workload) -> HardwareChoice:
        """The most probable configuration under the logits that fits the budget and runs
        ``workload`` (ranked by joint log-probability)."""
        cost = self._cost_for(list(workload.layers))
        log_q = [torch.log_softmax(logit.detach().double(), 0) for logit in self.logits]
        best: list[tuple[float, list[int]]] = []
        for index in self.space.grid():
            score = sum(lq[index[:, j]] for j, lq in enumerate(log_q))
            top = torch.topk(score, min(RANKED, score.numel()))
            best.extend((float(s), index[i].tolist()) for s, i in zip(top.values, top.indices,
                                                                      strict=True))
            best = sorted(best, key=lambda t: -t[0])[:RANKED]
        ranked = torch.tensor([index for _, index in best], dtype=torch.long)
        figures = cost.configs(ranked)
        valid = torch.nonzero(figures.valid).flatten()
        if valid.numel() == 0:
            return self.choose(workload, seed=0)
        rank = int(valid[0])
        return self._choice(ranked[rank].tolist(), "the co-searched accelerator (most probable "
                            f"configuration that runs the agent; rank {rank + 1})", len(best))

    # -- ground truth --------------------------------------------------------------------------

    def measure(self, workload: Workload, choice: HardwareChoice) -> Measurement:
        from accelerator_model.resources import budget_fit, hardware_resources
        from hw_sim.simulate import simulate

        hw = Hardware.model_validate(choice.description)
        report = simulate(workload, hw)
        resources = hardware_resources(hw)
        fits = budget_fit(hw)
        if fits is not None:
            resources["fits_budget"] = float(fits)
        return Measurement(fps=report.fps, latency_s=report.latency_s,
                           energy_pj=report.energy_pj, resources=resources,
                           report=report.to_dict())

    # -- multi-trial ---------------------------------------------------------------------------

    def mutable(self) -> Any:
        return self.space.mutable()

    def sample_latency(self, workload: Workload, sample: dict[str, Any] | None) -> float | None:
        assert sample is not None
        index = torch.tensor([self.space.index_of(sample)], dtype=torch.long)
        key = workload.model_dump_json()
        if key not in self._workload_costs:
            self._workload_costs[key] = self._cost_for(list(workload.layers))
        figures = self._workload_costs[key].configs(index)
        return float(figures.latency_s[0]) if bool(figures.valid[0]) else None

    def choice_for_sample(self, sample: dict[str, Any] | None,
                          workload: Workload) -> HardwareChoice:
        assert sample is not None
        return self._choice(self.space.index_of(sample), "the best multi-trial sample")

    def state_dict(self) -> dict[str, Any]:
        return {"logits": [logit.detach().clone() for logit in self.logits],
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for logit, saved in zip(self.logits, state["logits"], strict=True):
                logit.copy_(saved)
        self.generator.set_state(state["generator"])
