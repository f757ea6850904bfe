"""What the agent is deployed on: an edge CPU, or an accelerator drawn from a search space.

A target prices the supernet's candidate layers (:class:`nas.expected_cost.CandidateTable`)
for the differentiable search, may carry logits of its own (an accelerator's parameters),
picks the hardware for a fixed workload (accelerator-only search), and measures a finished
agent on the ground truth: hw_sim's cycle-level simulator for accelerators, the calibrated
latency model for CPUs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from hw_sim.workload import Workload
from nas.expected_cost import CandidateTable


@dataclass(frozen=True)
class Measurement:
    """An agent on its hardware (batch 1: one inference per environment step).

    Attributes:
        fps: inferences per second.
        latency_s: seconds per inference.
        energy_pj: energy per inference (None on a CPU).
        resources: hardware resources (accelerators: DSP, BRAM18, PEs, SRAM KiB...).
        report: the full per-layer report as plain data (written to the run directory).
    """

    fps: float
    latency_s: float
    energy_pj: float | None
    resources: dict[str, float] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HardwareChoice:
    """The hardware picked for an agent: a description to save and how it was found."""

    label: str
    description: dict[str, Any]  # what is written to hardware.yaml
    how: str  # e.g. "exhaustive over 48600 configurations"
    evaluations: int = 0


class Target(Protocol):
    """The interface the co-search and the baselines use."""

    kind: str
    label: str

    def prepare(self, table: CandidateTable) -> None:
        """Price every candidate layer of ``table`` (done once per search)."""
        ...

    def expected_latency(self, probabilities: dict[str, torch.Tensor]) -> torch.Tensor:
        """Expected latency (s) of a path drawn from ``probabilities`` on the target's current
        hardware (differentiable in the probabilities and in the target's own logits)."""
        ...

    def workload_latency(self, workload: Workload) -> float:
        """Latency (s) of a whole workload on the target's current hardware (the model the
        search uses, not the ground truth)."""
        ...

    def parameters(self) -> list[torch.nn.Parameter]:
        """The target's own logits (none for a CPU)."""
        ...

    def hardware_loss(self, probabilities: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The loss the target's logits descend, for a fixed architecture distribution."""
        ...

    def choose(self, workload: Workload, seed: int) -> HardwareChoice:
        """The best hardware for a fixed workload (accelerator-only search)."""
        ...

    def searched_latency(self, workload: Workload, seed: int) -> float:
        """Model latency (s) of ``workload`` on the hardware :meth:`choose` gives it."""
        ...

    def research(self, workload: Workload, seed: int, logit: float) -> HardwareChoice:
        """Auto-NBA's re-search: :meth:`choose` for ``workload``, and the target's logits set
        to point at the result (``logit`` on each chosen option, 0 elsewhere)."""
        ...

    def derived_for(self, workload: Workload) -> HardwareChoice:
        """The hardware the target's logits point at now (the most likely configuration
        that runs ``workload``)."""
        ...

    def measure(self, workload: Workload, choice: HardwareChoice) -> Measurement:
        """Ground truth of the workload on the chosen hardware."""
        ...

    def mutable(self) -> Any:
        """The hardware's part of a multi-trial search space (nni), or None if fixed."""
        ...

    def sample_latency(self, workload: Workload, sample: dict[str, Any] | None) -> float | None:
        """Model latency (s) of ``workload`` on one sampled configuration (None: it cannot
        run there)."""
        ...

    def choice_for_sample(self, sample: dict[str, Any] | None,
                          workload: Workload) -> HardwareChoice:
        """The hardware of a multi-trial sample."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class CpuTarget:
    """An edge CPU described by a calibrated profile (or a preset): nothing to search."""

    kind = "cpu"

    def __init__(self, profile_source: str):
        from accelerator_model.cpu import load_cpu_profile

        self.source = profile_source
        self.profile = load_cpu_profile(profile_source, field="target")
        self.label = f"cpu:{self.profile.spec.name}"
        self._costs: torch.Tensor | None = None
        self._table: CandidateTable | None = None

    def prepare(self, table: CandidateTable) -> None:
        from accelerator_model.cpu import latency_table

        self._table = table
        self._costs = latency_table(table.layers, self.profile).to(torch.float32)

    def expected_latency(self, probabilities: dict[str, torch.Tensor]) -> torch.Tensor:
        assert self._table is not None and self._costs is not None, "prepare() first"
        return self._table.expected(probabilities, self._costs)

    def workload_latency(self, workload: Workload) -> float:
        from accelerator_model.cpu import estimate_cpu

        return float(estimate_cpu(workload, self.profile).latency_s)

    def parameters(self) -> list[torch.nn.Parameter]:
        return []

    def hardware_loss(self, probabilities: dict[str, torch.Tensor]) -> torch.Tensor | None:
        return None

    def _choice(self) -> HardwareChoice:
        return HardwareChoice(label=self.label, description={
            "cpu_profile": self.source, "spec": self.profile.spec.model_dump(mode="json")},
            how="fixed target")

    def choose(self, workload: Workload, seed: int) -> HardwareChoice:
        return self._choice()

    def searched_latency(self, workload: Workload, seed: int) -> float:
        return self.workload_latency(workload)

    def research(self, workload: Workload, seed: int, logit: float) -> HardwareChoice:
        return self._choice()  # one fixed CPU: no logits to point

    def derived_for(self, workload: Workload) -> HardwareChoice:
        return self._choice()

    def measure(self, workload: Workload, choice: HardwareChoice) -> Measurement:
        from accelerator_model.cpu import estimate_cpu

        estimate = estimate_cpu(workload, self.profile)
        latency = float(estimate.latency_s)
        layers = [{"name": layer.name, "family": layer.family, "latency_s": layer.latency_s}
                  for layer in estimate.layers]
        return Measurement(fps=1.0 / latency, latency_s=latency, energy_pj=None,
                           resources={"threads": float(self.profile.spec.threads)},
                           report={"cpu": self.profile.spec.name, "latency_s": latency,
                                   "layers": layers})

    def mutable(self) -> Any:
        return None

    def sample_latency(self, workload: Workload, sample: dict[str, Any] | None) -> float | None:
        return self.workload_latency(workload)

    def choice_for_sample(self, sample: dict[str, Any] | None,
                          workload: Workload) -> HardwareChoice:
        return self._choice()

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state
