"""The sweep file of ``a3cs sweep``: a base search config, the grid, the resources per trial.

```yaml
base: ../configs/cosearch_breakout_v2.yaml     # a search config (none: the embedded default)
grid:                                          # every combination is one trial
  seed: [0, 1, 2]
  env_id: [MinAtar/Breakout-v1, MinAtar/Asterix-v1]
  cost.lam: [0.1, 0.5]                         # any search field by its dotted name
variants:                                      # optional: named sets of fields, crossed with grid
  hand_designed: {method: hand_designed}
  evolution_distill: {method: evolution, proxy.kind: distill, proxy.hardware: searched}
resources: {cpu: 1, gpu: 0}                    # per trial
torch_threads: 1                               # per trial (also its OMP_NUM_THREADS)
max_concurrent: null                           # trials at once (none: as resources allow)
```

Each trial is one ``a3cs search`` run directory named after what varies:
``[<game>_]<variant or method>[_<field>=<value>...]_s<seed>``.  Every trial's search config is
built and validated before anything starts (:func:`expand`).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, PositiveInt

from a3cs.paths import resolve_path
from a3cs.search.config import SearchConfig, load_search_config
from a3cs_common.errors import ConfigError
from a3cs_common.io import load_mapping
from a3cs_common.schema import FrozenModel, validate


class Resources(FrozenModel):
    """What one trial reserves (Ray's scheduler packs trials by it)."""

    cpu: float = Field(default=1.0, gt=0, description="CPU cores")
    gpu: float = Field(default=0.0, ge=0, description="GPUs (a fraction shares one)")


class SweepConfig(FrozenModel):
    """Every setting of ``a3cs sweep``."""

    base: str | None = Field(default=None, description="the search config every trial starts "
                             "from (relative to the sweep file); none: the embedded default")
    grid: dict[str, list[Any]] = Field(description="search fields (dotted names) and the "
                                       "values each takes; the trials are every combination")
    variants: dict[str, dict[str, Any]] | None = Field(
        default=None, description="named sets of search fields, each crossed with the grid "
        "(e.g. a method together with its own settings)")
    resources: Resources = Field(default_factory=Resources)
    torch_threads: PositiveInt = Field(default=1, description="torch threads of each trial")
    max_concurrent: PositiveInt | None = Field(default=None, description="trials at once at "
                                               "most; none: as many as the resources allow")


@dataclass(frozen=True)
class Trial:
    """One grid point: its run directory's name and its validated search config."""

    name: str
    overrides: dict[str, Any]
    config: SearchConfig


def _nested(flat: dict[str, Any], field: str) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}``; a clash (``a`` and ``a.b``) is a ConfigError."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{field}.{key}", value, f"a field inside {parent}, which "
                                  "is given a single value elsewhere")
        if isinstance(node.get(leaf), dict) and isinstance(value, dict):
            node[leaf].update(value)
        else:
            node[leaf] = value
    return out


#: A variant's name, which begins its trials' run directory names.
VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _short(value: Any) -> str:
    text = str(value).split("/")[-1]
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in text)


def load_sweep(path: str) -> tuple[SweepConfig, Path | None]:
    """The sweep file and its base search config's resolved path.

    Raises:
        ConfigError: a bad file or field.
    """
    sweep = validate(SweepConfig, load_mapping(path, field="SWEEP"), source=path)
    for key, values in sweep.grid.items():
        if not values:
            raise ConfigError(f"grid.{key}", values, "a non-empty list of values",
                              source=path)
        if not key or any(not part for part in key.split(".")):
            raise ConfigError("grid", key, "dotted search field names, e.g. cost.lam",
                              source=path)
    if not sweep.grid and not sweep.variants:
        raise ConfigError("grid", {}, "at least one field with values (or variants)",
                          source=path)
    if sweep.variants is not None and not sweep.variants:
        raise ConfigError("variants", {}, "at least one named variant, or no variants key",
                          source=path)
    for name in sweep.variants or {}:
        if not VARIANT_NAME.fullmatch(name):
            raise ConfigError("variants", name, "names of letters, digits, '.', '_' and '-', "
                              "beginning with a letter or digit (each names its trials' run "
                              "directories)", source=path)
    base = None
    if sweep.base is not None:
        base = Path(resolve_path(sweep.base, Path(path).resolve().parent))
        if not base.is_file():
            raise ConfigError("base", sweep.base, "a search config file (relative paths: "
                              "from the sweep file's folder)", source=path)
    return sweep, base


def expand(sweep: SweepConfig, base: Path | None, source: str) -> list[Trial]:
    """Every trial of the sweep, each search config built and validated.

    Raises:
        ConfigError: a grid point the search refuses (unknown field, method, env id, ...),
            named by its trial; two trials with the same name.
    """
    from a3cs.rl.envs import env_family

    keys = list(sweep.grid)
    variants = sweep.variants or {"": {}}
    varied = [k for k in keys if len(sweep.grid[k]) > 1 and k not in ("seed", "method",
                                                                         "env_id")]
    trials: list[Trial] = []
    for values in itertools.product(*(sweep.grid[k] for k in keys)):
        for label, fields in variants.items():
            point = {**fields, **dict(zip(keys, values, strict=True))}
            overrides = _nested({**point, "torch_threads": sweep.torch_threads}, "grid")
            try:
                config = load_search_config(str(base) if base else None, overrides)
                try:
                    env_family(config.env_id)
                except ConfigError as error:
                    raise ConfigError("env_id", error.value, error.allowed) from None
            except ConfigError as error:
                where = " ".join([label] * bool(label) + [f"{k}={v}" for k, v in point.items()])
                raise ConfigError(error.field, error.value, error.allowed,
                                  source=f"{source} (trial {where})") from None
            # the run's name in tables and plots: what varies besides the game and the seed
            name = "_".join([label or config.method] + [
                f"{k.split('.')[-1]}={_short(v)}" for k, v in zip(keys, values, strict=True)
                if k in varied])
            if name != config.method:
                config = config.model_copy(update={"label": name})
                overrides["label"] = name
            game = ([config.env_id.split("/")[-1].split("-")[0].lower()]
                    if len(sweep.grid.get("env_id", [])) > 1 else [])
            trials.append(Trial("_".join([*game, name, f"s{config.seed}"]), overrides,
                                config))
    names = [t.name for t in trials]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError("grid", name, "trials with distinct names (two grid points give "
                              "this one: vary seed, method or a variant)", source=source)
    return trials
