"""Reading workload and hardware descriptions from files: YAML/JSON, or SCALE-Sim's own
``.cfg`` and topology ``.csv`` (:mod:`hw_sim.scalesim_files`), chosen by extension.

Above :mod:`hw_sim.hardware`, :mod:`hw_sim.workload` and :mod:`hw_sim.scalesim_files`, so
none of them imports another to dispatch.
"""

from __future__ import annotations

from a3cs_common.io import load_mapping
from a3cs_common.schema import ModelT, validate
from hw_sim.hardware import Hardware
from hw_sim.scalesim_files import load_scalesim_cfg, load_topology_csv
from hw_sim.workload import Workload


def load_hardware(path: str, *, field: str = "--hw", memory_model: str | None = None) -> Hardware:
    """Load a hardware description from YAML/JSON, or from a SCALE-Sim ``.cfg`` file.

    Args:
        memory_model: ``"default"`` or ``"scalesim"`` to override the file's ``memory_model``
            (a ``.cfg`` has none: ``"default"`` unless given).

    Raises:
        ConfigError: the file is missing or any field is invalid (including for the memory
            model asked for).
    """
    if str(path).lower().endswith(".cfg"):
        return load_scalesim_cfg(path, field=field, memory_model=memory_model or "default")
    if memory_model is None:
        return _load_description(Hardware, path, field)
    data = load_mapping(path, field=field)
    data.setdefault("name", str(path).rsplit("/", 1)[-1].rsplit(".", 1)[0])
    data["memory_model"] = memory_model
    return validate(Hardware, data, source=str(path))


def load_workload(path: str, *, field: str = "--workload") -> Workload:
    """Load a workload from YAML/JSON, or from a SCALE-Sim topology CSV (conv or GEMM form).

    Raises:
        ConfigError: the file is missing or any field is invalid.
    """
    if str(path).lower().endswith(".csv"):
        return load_topology_csv(path, field=field)
    return _load_description(Workload, path, field)


def _load_description(model: type[ModelT], path: str, field: str) -> ModelT:
    """A YAML/JSON description, named after its file unless it names itself."""
    data = load_mapping(path, field=field)
    data.setdefault("name", str(path).rsplit("/", 1)[-1].rsplit(".", 1)[0])
    return validate(model, data, source=str(path))
