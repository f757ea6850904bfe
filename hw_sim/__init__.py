"""hw_sim: cycle-level simulation of DRL agents (or any CNN/MLP) on candidate accelerators.

Workload and hardware descriptions live here and are imported by every other package.
"""

from a3cs_common.errors import ConfigError
from hw_sim.files import load_hardware, load_workload
from hw_sim.hardware import Hardware
from hw_sim.report import LayerReport, SimReport
from hw_sim.simulate import simulate, simulate_layer
from hw_sim.workload import BlockCirculant, Conv2d, Dense, Linear, OneByN, Workload

__all__ = [
    "BlockCirculant",
    "ConfigError",
    "Conv2d",
    "Dense",
    "Hardware",
    "LayerReport",
    "Linear",
    "OneByN",
    "SimReport",
    "Workload",
    "load_hardware",
    "load_workload",
    "simulate",
    "simulate_layer",
]
