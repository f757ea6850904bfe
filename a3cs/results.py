"""A run's result row: what a co-search (or a baseline) found and how it measured.

One run directory holds one ``results.json`` (a list of rows) and the same rows as
``results.csv``.  `a3cs plot` reads them back.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from a3cs_common.errors import ConfigError
from a3cs_common.io import atomic_write_text, read_text
from a3cs_common.schema import allowed_from_error, format_loc


@dataclass(frozen=True)
class RunResult:
    """One (method, seed, lambda) outcome: the derived agent on the derived hardware.

    Attributes:
        method: how it was found (``a3cs``, ``hand_designed``, ``sequential``,
            ``random``, ``evolution``, ``a3cs_no_distill``, ...).
        seed: the run's seed.
        lam: weight of the hardware cost in the architecture loss (``None`` if not used).
        env_id: the environment.
        target: ``accelerator:<space>`` or ``cpu:<profile>``.
        score_mean: mean test return of the retrained agent over ``episodes`` episodes.
        score_std: standard deviation of those returns.
        episodes: test episodes.
        fps: inferences per second on the chosen hardware (batch 1).
        latency_s: seconds per inference.
        energy_pj: energy per inference (``None`` on a CPU target).
        flops: multiply-accumulates x 2 per inference.
        params: trainable parameters of the agent.
        resources: hardware resources (e.g. ``dsp``, ``bram18k``, ``sram_kb``), method-specific.
        arch_path: the derived architecture YAML, relative to the run directory.
        hw_path: the derived hardware YAML (``None`` on a CPU target).
        wall_time_s: wall time of the whole run.
        env_steps: environment steps spent (search + retraining).
        device: where the agent was trained and evaluated (``cpu``, ``cuda``; None in results
            written before this was recorded).
        label: the run's name in tables and plots (a sweep's variant); None: the method.
    """

    method: str
    seed: int
    lam: float | None
    env_id: str
    target: str
    score_mean: float
    score_std: Annotated[float, Field(ge=0)]
    episodes: Annotated[int, Field(ge=1)]
    fps: Annotated[float, Field(gt=0)]
    latency_s: Annotated[float, Field(gt=0)]
    energy_pj: Annotated[float, Field(gt=0)] | None
    flops: int
    params: int
    resources: dict[str, float] = field(default_factory=dict)
    arch_path: str | None = None
    hw_path: str | None = None
    wall_time_s: float = 0.0
    env_steps: int = 0
    device: str | None = None
    label: str | None = None

    @property
    def name(self) -> str:
        """What tables and plots call the run: its label, else its method."""
        return self.label or self.method

    def metric(self, name: str) -> float:
        """The efficiency metric ``name`` (``fps``, ``latency``, ``energy``)."""
        if name == "fps":
            return self.fps
        if name == "latency":
            return self.latency_s
        if name == "energy":
            if self.energy_pj is None:
                raise ConfigError("--x", "energy", f"fps or latency (run {self.method} seed "
                                  f"{self.seed} on {self.target} has no energy figure)")
            return self.energy_pj
        raise ConfigError("--x", name, "fps, latency or energy")


_COLUMNS = [f.name for f in fields(RunResult)]


def write_results(run_dir: str | Path, rows: list[RunResult]) -> tuple[Path, Path]:
    """Write ``results.json`` and ``results.csv`` into ``run_dir`` (atomically)."""
    run_dir = Path(run_dir)
    data = [asdict(row) for row in rows]
    json_path = atomic_write_text(run_dir / "results.json", json.dumps(data, indent=2) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_COLUMNS)
    writer.writeheader()
    for row in data:
        writer.writerow({**row, "resources": json.dumps(row["resources"], sort_keys=True)})
    csv_path = atomic_write_text(run_dir / "results.csv", buffer.getvalue())
    return json_path, csv_path


def read_results(run_dir: str | Path) -> list[RunResult]:
    """Read the rows of ``RUN_DIR/results.json``.

    Raises:
        ConfigError: the folder has no results.json, or it is not a list of result rows.
    """
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise ConfigError("RUN_DIR", str(run_dir), "a run directory containing results.json "
                          "(written by a3cs search when a run completes)")
    text = read_text(path, field="RUN_DIR", expected="a results.json written by a3cs search")
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError("results.json", str(path), f"valid JSON (parse error at line "
                          f"{exc.lineno})") from None
    if not isinstance(data, list) or not data:
        raise ConfigError("results.json", short_type(data), "a non-empty list of result rows",
                          source=str(path))
    try:
        return _ROWS.validate_python(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = format_loc(tuple(err["loc"]))
        if err["type"] == "unexpected_keyword_argument":
            raise ConfigError(field, err.get("input"), "no such field (a row's fields: "
                              f"{', '.join(_COLUMNS)})", source=str(path)) from None
        if err["type"] == "missing":
            raise ConfigError(field, "<missing>", "a value is required",
                              source=str(path)) from None
        raise ConfigError(field, err.get("input"), allowed_from_error(err),
                          source=str(path)) from None


def short_type(data: Any) -> str:
    """``data``'s kind, for messages about a file's top level."""
    return "an empty list" if data == [] else f"a {type(data).__name__}"


# Rows read back from files: field types, finite numbers and positive figures checked.
_ROWS = TypeAdapter(list[RunResult], config=ConfigDict(allow_inf_nan=False, extra="forbid"))
