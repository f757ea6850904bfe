"""The per-environment training defaults (``a3cs/data/env_defaults.yaml``), one versioned table.

``a3cs train --env E`` with no config trains with E's entry; a config file and CLI flags
override it field by field.  Lookup: the id's own entry, else its family's; within an entry,
the algorithm's section (``ppo``, ``a2c``), else nothing (the algorithm's generic defaults of
:class:`~a3cs.rl.config.TrainConfig` apply).  An environment backend other than ``default``
may change the family's values (``backends.<backend>.<family>``), field by field.

>>> entry = defaults_for("CartPole-v1", "ppo")
>>> entry.name, entry.values["n_epochs"]
('CartPole-v1', 20)
>>> defaults_for("MinAtar/Asterix-v1", "ppo").name
'minatar'
>>> batched = defaults_for("MinAtar/Asterix-v1", "ppo", backend="batched")
>>> batched.name, batched.values["n_epochs"]
('minatar, batched backend', 2)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from a3cs.rl.config import TrainConfig
from a3cs.rl.envs import env_family
from a3cs_common.errors import ConfigError
from a3cs_common.io import load_mapping
from a3cs_common.schema import validate

TABLE_PATH = Path(__file__).resolve().parent.parent / "data" / "env_defaults.yaml"
ALGORITHMS = ("ppo", "a2c")
BACKENDS = tuple(TrainConfig.model_fields["env_backend"].annotation.__args__)
#: the backends the table's ``backends`` group may name (not the default one)
TABLE_BACKENDS = tuple(backend for backend in BACKENDS if backend != "default")


@dataclass(frozen=True)
class DefaultsEntry:
    """One entry of the table, for one algorithm.

    Attributes:
        name: the entry's key (an env id, or a family: ``minatar``, ``classic``...), and the
            backend whose changes it carries (``minatar, batched backend``).
        source: where its values come from (a tuned config of rl-zoo, CleanRL, gymnax-blines;
            then the backend's changes and theirs).
        algo: the algorithm whose section was taken.
        values: TrainConfig fields (empty when the entry has no section for ``algo``).
        version: the table's version.
    """

    name: str
    source: str
    algo: str
    values: dict[str, Any] = field(default_factory=dict)
    version: int = 0

    def describe(self) -> str:
        """One line for the user: which entry, from where."""
        if not self.values:
            return (f"defaults: {self.name} has no {self.algo} entry; {self.algo}'s generic "
                    f"defaults (table v{self.version})")
        return f"defaults: {self.name} ({self.algo}, table v{self.version}): {self.source}"


@functools.cache
def load_table(path: Path = TABLE_PATH) -> dict[str, Any]:
    """The table, checked: every section a mapping of TrainConfig fields that validates.

    Raises:
        ConfigError: a malformed table (a key that is not a TrainConfig field, a bad value).
    """
    data = load_mapping(str(path), field="env_defaults")
    version = data.get("version")
    if not isinstance(version, int) or version < 1:
        raise ConfigError("env_defaults.version", version, "an integer >= 1")
    allowed = set(TrainConfig.model_fields) - {"env_id", "arch", "teacher", "distill", "seed",
                                               "env_backend"}
    backends = data.get("backends") or {}
    if not isinstance(backends, dict) or not all(
            name in TABLE_BACKENDS and isinstance(families, dict)
            for name, families in backends.items()):
        raise ConfigError("env_defaults.backends", backends, "a mapping of "
                          f"{' or '.join(TABLE_BACKENDS)} to family entries")
    groups = [("envs", data.get("envs") or {}), ("families", data.get("families") or {}),
              *((f"backends.{name}", families) for name, families in backends.items())]
    for group, entries in groups:
        for name, entry in entries.items():
            where = f"env_defaults.{group}.{name}"
            if not isinstance(entry, dict) or not isinstance(entry.get("source"), str):
                raise ConfigError(where, entry, "a mapping with a 'source' string")
            for algo, values in entry.items():
                if algo == "source":
                    continue
                if algo not in ALGORITHMS or not isinstance(values, dict):
                    raise ConfigError(f"{where}.{algo}", values,
                                      f"a mapping under one of {', '.join(ALGORITHMS)}")
                unknown = sorted(set(values) - allowed)
                if unknown:
                    raise ConfigError(f"{where}.{algo}.{unknown[0]}", values[unknown[0]],
                                      "a TrainConfig field")
                validate(TrainConfig, {**values, "algo": algo}, source=f"{where}.{algo}")
    return data


def defaults_for(env_id: str, algo: str, backend: str = "default") -> DefaultsEntry:
    """The entry ``a3cs train`` uses for ``env_id`` and ``algo`` on the environment
    ``backend``.

    Raises:
        ConfigError: ``env_id`` is not an environment :func:`~a3cs.rl.envs.make_env` builds.
    """
    table = load_table()
    family = env_family(env_id)
    version = int(table["version"])
    found = DefaultsEntry(name=family, source="", algo=algo, version=version)
    for name, entry in (((env_id, (table.get("envs") or {}).get(env_id)),
                         (family, (table.get("families") or {}).get(family)))):
        if entry is not None:
            found = DefaultsEntry(name=name, source=entry["source"], algo=algo,
                                  values=dict(entry.get(algo) or {}), version=version)
            break
    change = ((table.get("backends") or {}).get(backend) or {}).get(family)
    if change is None or not change.get(algo):
        return found
    return DefaultsEntry(name=f"{found.name}, {backend} backend",
                         source=f"{found.source}; {backend} backend: {change['source']}",
                         algo=algo, values={**found.values, **change[algo]}, version=version)


def backend_changes(env_id: str, algo: str, backend: str) -> dict[str, Any]:
    """The TrainConfig fields the table's ``backends.<backend>`` section changes for
    ``env_id``'s family and ``algo`` (empty when it changes none): what a config written for
    the default backend must change to train as the ``backend``'s entry would.

    >>> backend_changes("MinAtar/Breakout-v1", "ppo", "batched")["n_epochs"]
    2
    >>> backend_changes("CartPole-v1", "ppo", "batched")
    {}
    """
    change = ((load_table().get("backends") or {}).get(backend) or {}).get(env_family(env_id))
    return dict((change or {}).get(algo) or {})


def with_env_defaults(values: dict[str, Any]) -> tuple[dict[str, Any], DefaultsEntry]:
    """``values`` (a user's TrainConfig fields) on top of their environment's entry.

    The environment, algorithm and environment backend are the user's, else TrainConfig's
    defaults.

    Raises:
        ConfigError: an env id that is not one :func:`~a3cs.rl.envs.make_env` builds.
    """
    env_id = values.get("env_id") or TrainConfig.model_fields["env_id"].default
    algo = values.get("algo") or TrainConfig.model_fields["algo"].default
    backend = values.get("env_backend") or TrainConfig.model_fields["env_backend"].default
    if not isinstance(env_id, str):
        raise ConfigError("env_id", env_id, "an environment id string")
    if algo not in ALGORITHMS:
        raise ConfigError("algo", algo, " or ".join(ALGORITHMS))
    if backend not in BACKENDS:
        raise ConfigError("env_backend", backend, " or ".join(BACKENDS))
    entry = defaults_for(env_id, algo, backend)
    return {**entry.values, **values}, entry
