"""The accelerator search space: which hw_sim hardware fields a search may set, to which
values, how layers are assigned to sub-accelerators, and what is valid.

A space is declared once, in YAML (:class:`SpaceConfig`), and exposed three ways:

* :meth:`AcceleratorSpace.mutable`: an nni ``MutableDict`` of ``nni.choice`` parameters plus a
  :class:`BudgetConstraint`, so nni's strategies (Random, GridSearch, evolution) can sample it
  and every sample is checked with a reason;
* :meth:`AcceleratorSpace.encode`: a batch of configurations, given as option indices, as
  :class:`~accelerator_model.encode.HardwareBatch` columns for the batched model (no pydantic
  objects on the hot path);
* :meth:`AcceleratorSpace.hardware`: one sample as :class:`hw_sim.hardware.Hardware`
  instances (one per chunk), which ``a3cs simulate`` and ``a3cs estimate`` load.

Nothing here is a new hardware description: the FPGA template's knobs map onto hw_sim's fields.
Parallel factors are the PE array's rows and columns (``pe_rows`` x ``pe_cols``: the reduction
and output-channel parallelism under ws, output pixels x channels under os), the compute mode
is the dataflow, buffer tiles are the buffer sizes (hw_sim's engines cut every stream into the
largest tile that fits half a buffer), bitwidth is ``word_bits``, and the block-circulant and
1xN engines are sized by their own fields.  The chunk-based template of Auto-NBA is a list of
such ``Hardware`` instances, one per sub-accelerator, with a rule that assigns each layer to
one of them (:class:`ChunkSpec`); the pipeline runs at the pace of its slowest chunk.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, PositiveFloat, PositiveInt, field_validator
from torch import Tensor

from a3cs_common.errors import ConfigError
from a3cs_common.io import load_mapping
from a3cs_common.schema import FrozenModel, validate
from accelerator_model.encode import DATAFLOWS, DTYPE, ENERGY_FIELDS, HardwareBatch, hardware_row
from accelerator_model.resources import BUDGET_REASONS, Resources, over_budget, resources
from hw_sim.files import load_hardware
from hw_sim.hardware import Dataflow, Hardware
from hw_sim.workload import Conv2d, Linear

# Searchable parameter -> (Hardware section or None, field, HardwareBatch column).
PARAMETERS: dict[str, tuple[str | None, str, str]] = {
    "pe_shape": ("pe_array", "rows,cols", "rows,cols"),
    "pe_rows": ("pe_array", "rows", "rows"),
    "pe_cols": ("pe_array", "cols", "cols"),
    "dataflow": ("pe_array", "dataflow", "dataflow"),
    "sram_ifmap_kb": ("sram_kb", "ifmap", "ifmap_words"),
    "sram_filter_kb": ("sram_kb", "filter", "filter_words"),
    "sram_ofmap_kb": ("sram_kb", "ofmap", "ofmap_words"),
    "word_bits": (None, "word_bits", "word_bits"),
    "fft_points": ("block_circulant", "fft_points", "bc_fft_points"),
    "fft_units": ("block_circulant", "fft_units", "bc_fft_units"),
    "ifft_units": ("block_circulant", "ifft_units", "bc_ifft_units"),
    "complex_mac_lanes": ("block_circulant", "complex_mac_lanes", "bc_lanes"),
    "vector_lanes": ("one_by_n", "vector_lanes", "nx_lanes"),
    "lane_width": ("one_by_n", "lane_width", "nx_width"),
    "n_m": (None, "n_m", "has_nm"),
}
SRAM_PARAMETERS = ("sram_ifmap_kb", "sram_filter_kb", "sram_ofmap_kb")
ASSIGNMENT = "chunk_assignment"  # the searched chunk-assignment rule's label
#: most (word_bits x buffer sizes) option combinations a space may have: hw_sim resolves each
#: one's energy table once (~25 us each, so 25 s at most; 200 options per buffer, 16 M
#: tables, ran for minutes with nothing shown and no end in sight of a 2-minute timeout)
ENERGY_TABLE_LIMIT = 1_000_000
#: spaces up to this many configurations keep their within-budget grid (int16 option indices:
#: 2 bytes a parameter, ~25 MB for a million configurations of 12 parameters)
BUDGET_CACHE_LIMIT = 1_000_000


def _unique(values: tuple) -> tuple:
    if len(set(values)) != len(values):
        raise ConfigError("", list(values), "a list without repeated values")
    return values


class ArrayShapes(FrozenModel):
    """Array shapes as the product of row and column counts."""

    rows: tuple[PositiveInt, ...] = Field(min_length=1)
    cols: tuple[PositiveInt, ...] = Field(min_length=1)


class SpaceParameters(FrozenModel):
    """Options of each searched hardware field (leave a field out to keep the base value)."""

    pe_shape: tuple[tuple[PositiveInt, PositiveInt], ...] | ArrayShapes | None = Field(
        default=None,
        description="PE array shapes as [rows, cols] pairs, or {rows: [...], cols: [...]} for "
        "every combination: one parameter, so a search moves rows and columns together "
        "(they share the DSP budget)")
    pe_rows: tuple[PositiveInt, ...] | None = Field(default=None, min_length=1,
                                                     description="PE array rows")
    pe_cols: tuple[PositiveInt, ...] | None = Field(default=None, min_length=1,
                                                     description="PE array columns")
    dataflow: tuple[Dataflow, ...] | None = Field(default=None, min_length=1)
    sram_ifmap_kb: tuple[PositiveFloat, ...] | None = Field(default=None, min_length=1)
    sram_filter_kb: tuple[PositiveFloat, ...] | None = Field(default=None, min_length=1)
    sram_ofmap_kb: tuple[PositiveFloat, ...] | None = Field(default=None, min_length=1)
    word_bits: tuple[PositiveInt, ...] | None = Field(default=None, min_length=1)
    fft_points: tuple[PositiveInt, ...] | None = Field(default=None, min_length=1)
    fft_units: tuple[PositiveInt, ...] | None = Field(default=None, min_length=1)
    ifft_units: tuple[PositiveInt, ...] | None = Field(default=None, min_length=1)
    complex_mac_lanes: tuple[PositiveInt, ...] | None = Field(default=None, min_length=1)
    vector_lanes: tuple[PositiveInt, ...] | None = Field(default=None, min_length=1)
    lane_width: tuple[PositiveInt, ...] | None = Field(default=None, min_length=1)
    n_m: tuple[bool, ...] | None = Field(
        default=None, min_length=1, description="whether the array skips N:M zero rows "
        "(false, true: let the search decide; the skipping costs LUTs, which the FPGA budget "
        "does not count)")

    @field_validator("pe_shape")
    @classmethod
    def _shape_pairs(cls, value: tuple | ArrayShapes | None) -> tuple | None:
        if isinstance(value, ArrayShapes):
            value = tuple(itertools.product(value.rows, value.cols))
        if value is not None and not value:
            raise ConfigError("", [], "at least one [rows, cols] shape")
        return value

    @field_validator("*")
    @classmethod
    def _no_repeats(cls, value: tuple | None) -> tuple | None:
        return None if value is None else _unique(value)


AssignmentRule = Literal["by_kind", "by_size"]
RULES: tuple[str, ...] = ("by_kind", "by_size")


class ChunkSpec(FrozenModel):
    """Sub-accelerators ("chunks", Auto-NBA's FPGA template): each chunk has its own copy of
    every searched parameter; layers are assigned to chunks by a rule; chunks run as a
    pipeline, so throughput is set by the slowest."""

    count: Literal[1, 2] = Field(default=1, description="number of chunks")
    assignment: tuple[AssignmentRule, ...] = Field(
        default=("by_kind",), min_length=1,
        description="rule(s) assigning layers to chunks (several: the rule is searched). "
        "by_kind: convolutions to chunk 0, linear layers to chunk 1; by_size: layers with at "
        "least size_threshold output pixels to chunk 0, the rest to chunk 1")
    size_threshold: PositiveInt = Field(default=16, description="output pixels (by_size)")

    @field_validator("assignment", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("assignment")
    @classmethod
    def _no_repeats(cls, value: tuple) -> tuple:
        return _unique(value)


Objective = Literal["latency", "energy", "edp", "throughput"]


class SpaceConfig(FrozenModel):
    """An accelerator search space (YAML)."""

    name: str = Field(min_length=1)
    base: str = Field(description="hardware YAML whose fields the search varies (relative to "
                      "this file); it holds the clock, DRAM, energy table and budget")
    objective: Objective = Field(
        default="latency",
        description="latency (s per inference), energy (pJ), edp (latency x energy) or "
        "throughput (1 / FPS; chunks pipelined)")
    parameters: SpaceParameters
    chunks: ChunkSpec = Field(default_factory=ChunkSpec)


@dataclass(frozen=True)
class Parameter:
    """One searched parameter: its nni label, hw_sim field and options."""

    label: str
    name: str
    chunk: int
    options: tuple


class AcceleratorSpace:
    """A validated search space over a base hardware configuration.

    Args:
        config: the space.
        base: the hardware every configuration starts from.

    Raises:
        ConfigError: a parameter the base hardware cannot take (an engine it lacks, a value
            hw_sim rejects), a chunk rule that does not fit the chunk count, or a budget no
            configuration fits.
    """

    def __init__(self, config: SpaceConfig, base: Hardware, *, source: str | None = None):
        self.config = config
        self.base = base
        self.source = source
        chosen = {name: options for name, options in config.parameters if options is not None}
        both = [name for name in ("pe_rows", "pe_cols") if name in chosen]
        if "pe_shape" in chosen and both:
            raise ConfigError(f"parameters.{both[0]}", list(chosen[both[0]]),
                              "to be left out when pe_shape is given (pe_shape sets both)",
                              source=source)
        if not chosen:
            raise ConfigError("parameters", {}, "at least one searched parameter: "
                              + ", ".join(PARAMETERS), source=source)
        for name, options in chosen.items():
            section = PARAMETERS[name][0]
            if section in ("block_circulant", "one_by_n") and getattr(base, section) is None:
                raise ConfigError(f"parameters.{name}", list(options),
                                  f"a base hardware with a {section} engine ({config.base} "
                                  "has none)", source=source)
            for i, value in enumerate(options):
                try:
                    _with_fields(base, {name: value})
                except ConfigError as exc:
                    raise ConfigError(f"parameters.{name}[{i}]", value, exc.allowed,
                                      source=source) from None
        table_names = [name for name in ("word_bits", *SRAM_PARAMETERS) if name in chosen]
        combinations = math.prod(len(chosen[name]) for name in table_names)
        if combinations > ENERGY_TABLE_LIMIT:
            raise ConfigError(
                "parameters", {name: len(chosen[name]) for name in table_names},
                f"at most {ENERGY_TABLE_LIMIT:,} combinations of the options of "
                f"{', '.join(table_names)} (this space has {combinations:,}; each one's energy "
                "table is made once): fewer options of these", source=source)
        chunks = config.chunks
        self.parameters: tuple[Parameter, ...] = tuple(
            Parameter(self._label(name, c), name, c, tuple(options))
            for c in range(chunks.count) for name, options in chosen.items())
        if chunks.count > 1 and len(chunks.assignment) > 1:
            self.parameters += (Parameter(ASSIGNMENT, ASSIGNMENT, -1, chunks.assignment),)
        self._energy_cache: dict[int, dict] = {}
        self._budget_batches: dict[int, list[tuple[Tensor, int]]] = {}

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def from_yaml(cls, path: str, *, field: str = "--space") -> AcceleratorSpace:
        """Load a space YAML (its ``base`` is resolved relative to the file).

        Raises:
            ConfigError: the file or any field is invalid.
        """
        data = load_mapping(path, field=field)
        data.setdefault("name", Path(path).stem)
        config = validate(SpaceConfig, data, source=str(path))
        base_path = Path(path).parent / config.base
        base = load_hardware(str(base_path), field="base")
        return cls(config, base, source=str(path))

    def _label(self, name: str, chunk: int) -> str:
        return name if self.config.chunks.count == 1 else f"chunk{chunk}.{name}"

    # -- size and enumeration ----------------------------------------------------------------

    @property
    def chunk_count(self) -> int:
        return self.config.chunks.count

    @property
    def objective(self) -> Objective:
        return self.config.objective

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(p.label for p in self.parameters)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Number of options of each parameter."""
        return tuple(len(p.options) for p in self.parameters)

    @property
    def size(self) -> int:
        """Number of configurations (before validity)."""
        return math.prod(self.sizes)

    def grid(self, batch: int = 65536) -> Iterator[Tensor]:
        """Every configuration, as ``[<=batch, len(parameters)]`` option-index tensors, in
        ``itertools.product`` order (the last parameter varies fastest)."""
        sizes = torch.tensor(self.sizes, dtype=torch.long)
        strides = torch.tensor([math.prod(self.sizes[j + 1:]) for j in range(len(self.sizes))],
                               dtype=torch.long)
        for start in range(0, self.size, batch):
            flat = torch.arange(start, min(start + batch, self.size), dtype=torch.long)
            yield torch.div(flat[:, None], strides, rounding_mode="floor") % sizes

    def within_budget(self, batch: int = 16384) -> Iterator[tuple[Tensor, int]]:
        """:meth:`grid`'s batches cut to the configurations within the budget, each with the
        number of configurations it was cut from.

        The budget does not depend on the network, and a co-search runs an accelerator search
        over the same grid for every candidate, so a space of up to
        :data:`BUDGET_CACHE_LIMIT` configurations makes the batches once per batch size.
        """
        cached = self._budget_batches.get(batch)
        if cached is not None:
            for index, examined in cached:
                yield index.long(), examined
            return
        made = []
        for index in self.grid(batch):
            kept = index[self.budget_reason(index) == 0]
            made.append((kept.to(torch.int16), index.shape[0]))
            yield kept, index.shape[0]
        if self.size <= BUDGET_CACHE_LIMIT and max(self.sizes) <= torch.iinfo(torch.int16).max:
            self._budget_batches[batch] = made

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``[n, len(parameters)]`` option indices drawn uniformly."""
        return torch.stack([torch.randint(k, (n,), generator=generator) for k in self.sizes],
                           dim=1)

    def rule_index(self, index: Tensor) -> Tensor:
        """``[N]`` index into :attr:`rules` of each configuration's chunk assignment."""
        for j, p in enumerate(self.parameters):
            if p.name == ASSIGNMENT:
                return index[:, j]
        return torch.zeros(index.shape[0], dtype=torch.long)

    @property
    def rules(self) -> tuple[str, ...]:
        """The chunk-assignment rules a configuration may use."""
        return self.config.chunks.assignment

    def values(self, index: Sequence[int] | Tensor) -> dict[str, Any]:
        """The sample (label -> value) of one configuration's option indices."""
        return {p.label: p.options[int(i)] for p, i in zip(self.parameters, index, strict=True)}

    def index_of(self, sample: Mapping[str, Any]) -> list[int]:
        """Option indices of a sample (label -> value).

        Raises:
            ConfigError: a label is missing or a value is not among its options.
        """
        out = []
        for p in self.parameters:
            if p.label not in sample:
                raise ConfigError(p.label, "<missing>", "a value for every parameter")
            value = sample[p.label]
            value = tuple(value) if isinstance(value, list) else value
            if value not in p.options:
                raise ConfigError(p.label, sample[p.label], f"one of {list(p.options)}")
            out.append(p.options.index(value))
        return out

    # -- nni ---------------------------------------------------------------------------------

    def mutable(self) -> Any:
        """The space as an nni ``MutableDict``: one ``nni.choice`` per parameter plus the
        budget constraint (so ``contains``/``freeze`` reject over-budget samples with the
        reason)."""
        import nni
        from nni.mutable import MutableDict

        entries: dict[str, Any] = {p.label: nni.choice(p.label, list(p.options))
                                   for p in self.parameters}
        entries["budget"] = budget_constraint(self)
        return MutableDict(entries)

    # -- configurations ----------------------------------------------------------------------

    def hardware(self, sample: Mapping[str, Any]) -> list[Hardware]:
        """One ``Hardware`` per chunk for a sample (label -> value)."""
        self.index_of(sample)  # validates labels and values
        out = []
        for c in range(self.chunk_count):
            fields = {p.name: sample[p.label] for p in self.parameters if p.chunk == c}
            hw = _with_fields(self.base, fields)
            name = self.config.name if self.chunk_count == 1 else f"{self.config.name}_chunk{c}"
            out.append(hw.model_copy(update={"name": name}))
        return out

    def encode(self, index: Tensor, chunk: int = 0) -> HardwareBatch:
        """Chunk ``chunk`` of the configurations ``index`` (``[N, len(parameters)]`` option
        indices) as batched-model columns."""
        n = index.shape[0]
        columns = {name: torch.full((n,), float(value), dtype=DTYPE) for name, value in
                   hardware_row(self.base).items()}
        # Option indices of the fields that set buffer words and the energy table.
        energy_index = []
        for name in ("word_bits", *SRAM_PARAMETERS):
            found = [j for j, p in enumerate(self.parameters)
                     if p.name == name and p.chunk == chunk]
            energy_index.append(index[:, found[0]] if found else torch.zeros(n, dtype=torch.long))
        for j, p in enumerate(self.parameters):
            if p.chunk != chunk or p.name == "word_bits" or p.name in SRAM_PARAMETERS:
                continue
            if p.name == "pe_shape":
                shapes = torch.tensor(p.options, dtype=DTYPE)[index[:, j]]
                columns["rows"], columns["cols"] = shapes[:, 0], shapes[:, 1]
                continue
            values = [DATAFLOWS.index(v) for v in p.options] if p.name == "dataflow" \
                else p.options
            columns[PARAMETERS[p.name][2]] = torch.tensor(values, dtype=DTYPE)[index[:, j]]
        tables = self._energy_tables(chunk)
        strides = tables["strides"]
        combo = sum(i * stride for i, stride in zip(energy_index, strides, strict=True))
        columns["word_bits"] = tables["bits"][combo]
        for name in SRAM_PARAMETERS:
            columns[PARAMETERS[name][2]] = tables[name][combo]
        return HardwareBatch(names=(), **columns, energy=tables["energy"][combo])

    def _energy_tables(self, chunk: int) -> dict[str, Tensor]:
        """Word width, buffer words and the resolved energy table of every combination of the
        (word_bits, three buffer sizes) options of a chunk -- hw_sim's own figures, made once
        (``Hardware.sram_words``, ``Hardware.energy_per_action``)."""
        if chunk in self._energy_cache:
            return self._energy_cache[chunk]
        options = []
        for name in ("word_bits", *SRAM_PARAMETERS):
            found = [p for p in self.parameters if p.name == name and p.chunk == chunk]
            options.append(found[0].options if found else (None,))
        sizes = [len(o) for o in options]
        strides = [math.prod(sizes[i + 1:]) for i in range(len(sizes))]
        rows: dict[str, list] = {"bits": [], **{name: [] for name in SRAM_PARAMETERS},
                                 "energy": []}
        for combo in itertools.product(*options):
            fields = {name: value for name, value in zip(("word_bits", *SRAM_PARAMETERS), combo,
                                                         strict=True) if value is not None}
            hw = _with_fields(self.base, fields)
            rows["bits"].append(hw.word_bits)
            for name in SRAM_PARAMETERS:
                rows[name].append(hw.sram_words(name.split("_")[1]))
            table = hw.energy_per_action()
            rows["energy"].append([getattr(table, f) for f in ENERGY_FIELDS])
        out = {name: torch.tensor(values, dtype=DTYPE) for name, values in rows.items()}
        out["strides"] = strides
        self._energy_cache[chunk] = out
        return out

    # -- validity ----------------------------------------------------------------------------

    def resources(self, index: Tensor, encoded: Sequence[HardwareBatch] | None = None
                  ) -> list[Resources]:
        """Resources of each chunk of the configurations ``index`` (``encoded``: their
        :meth:`encode` per chunk, if already made)."""
        encoded = encoded or [self.encode(index, c) for c in range(self.chunk_count)]
        return [resources(batch) for batch in encoded]

    def budget_reason(self, index: Tensor, encoded: Sequence[HardwareBatch] | None = None
                      ) -> Tensor:
        """Per configuration: 0 within the base hardware's budget (all chunks together),
        else a key of :data:`accelerator_model.resources.BUDGET_REASONS`."""
        per_chunk = self.resources(index, encoded)
        total = Resources(*(sum(getattr(r, f) for r in per_chunk) for f in Resources.__slots__))
        return over_budget(total, self.base)

    def explain_budget(self, index: Sequence[int] | Tensor) -> str | None:
        """Why one configuration is over budget (``None`` when it fits)."""
        row = torch.as_tensor(list(index), dtype=torch.long).reshape(1, -1)
        code = int(self.budget_reason(row)[0])
        if code == 0:
            return None
        per_chunk = self.resources(row)
        field, what = BUDGET_REASONS[code]
        used = {1: "dsp", 2: "bram18k", 3: "area_mm2"}[code]
        need = sum(float(getattr(r, used)[0]) for r in per_chunk)
        budget = self.base.budget
        assert budget is not None
        limit = {1: budget.fpga.dsp if budget.fpga else None,
                 2: budget.fpga.bram18k if budget.fpga else None,
                 3: budget.asic.area_mm2 if budget.asic else None}[code]
        return f"needs {need:g} {used}, over {field} = {limit:g} ({what})"

    def check_budget_feasible(self) -> None:
        """Raise unless at least one configuration fits the budget.

        Raises:
            ConfigError: every configuration is over budget.
        """
        if self.base.budget is None:
            return
        smallest: dict[str, float] = {}
        for index in self.grid():
            if bool((self.budget_reason(index) == 0).any()):
                return
            for r in self.resources(index):
                for name in ("dsp", "bram18k", "area_mm2"):
                    smallest[name] = min(smallest.get(name, math.inf),
                                         float(getattr(r, name).min()))
        raise ConfigError(
            "budget", self.base.budget.model_dump(exclude_none=True),
            "a budget that some configuration of the space fits (the smallest needs "
            + ", ".join(f"{v:g} {k}" for k, v in smallest.items()) + ")", source=self.source)


def _with_fields(base: Hardware, fields: Mapping[str, Any]) -> Hardware:
    """``base`` with searched parameters (name -> value) applied, validated by hw_sim."""
    data = base.model_dump()
    for name, value in fields.items():
        section, key, _ = PARAMETERS[name]
        if name == "pe_shape":
            data["pe_array"] = {**data["pe_array"], "rows": value[0], "cols": value[1]}
        elif section is None:
            data[key] = value
        else:
            data[section] = {**data[section], key: value}
    return validate(Hardware, data)


def budget_constraint(space: AcceleratorSpace) -> Any:
    """An nni ``Constraint``: a sample is valid when its configuration fits the base hardware's
    budget; a violation says which resource is over and by how much."""
    from nni.mutable import Constraint, ConstraintViolation

    class BudgetConstraint(Constraint):
        def __init__(self) -> None:
            self.label = "budget"

        def leaf_mutables(self, is_leaf: Any) -> Iterator[Any]:
            yield self

        def check_contains(self, sample: Mapping[str, Any]) -> Any:
            try:
                index = space.index_of(sample)
            except ConfigError as exc:
                return ConstraintViolation(str(exc))
            reason = space.explain_budget(index)
            return None if reason is None else ConstraintViolation(reason)

    return BudgetConstraint()


def assignment(space: AcceleratorSpace, layers: Sequence[Conv2d | Linear], rule: str
               ) -> list[int]:
    """Chunk of each layer under ``rule`` (all 0 with one chunk)."""
    if space.chunk_count == 1:
        return [0] * len(layers)
    if rule == "by_kind":
        return [0 if isinstance(layer, Conv2d) else 1 for layer in layers]
    threshold = space.config.chunks.size_threshold
    return [0 if layer.out_height * layer.out_width >= threshold else 1 for layer in layers]
