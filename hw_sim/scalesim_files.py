"""SCALE-Sim's own input files: topology CSVs as workloads, ``.cfg`` files as hardware.

SCALE-Sim users reuse their files, and validation runs both tools on the very same inputs.

Topology CSV, conv form (one header row; IFMAP sizes already include padding)::

    Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,

Output size is SCALE-Sim's ``ceil((H - R + stride) / stride)`` (``ceil_mode`` layers).  Rows
whose name contains ``DP`` are depthwise: SCALE-Sim runs them as one single-channel layer per
channel, which is a grouped convolution with ``groups = Channels``.

GEMM form::

    Layer, M, N, K,

is a linear layer with ``batch = M``, ``out_features = N``, ``in_features = K``.

``.cfg``: ``[architecture_presets]`` ArrayHeight, ArrayWidth, IfmapSramSzkB, FilterSramSzkB,
OfmapSramSzkB, Dataflow, Bandwidth and ``[run_presets]`` InterfaceBandwidth (``USER`` uses
Bandwidth words/cycle; ``CALC`` means the bandwidth never stalls: unlimited here).  SCALE-Sim
words are one byte and it has no clock; the clock is 1000 MHz (so 1 cycle = 1 ns) unless
``clock_mhz`` is given.  Address offsets, request buffers and bank layouts do not affect
timing here and are ignored.
"""

from __future__ import annotations

import configparser
from pathlib import Path

from hw_sim.errors import ConfigError
from hw_sim.hardware import Hardware
from hw_sim.schema import validate
from hw_sim.workload import Conv2d, Linear, Workload

_CONV_COLUMNS = ("IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width", "Channels",
                 "Num Filter", "Strides")
_GEMM_COLUMNS = ("M", "N", "K")


def _positive_int(text: str, where: str, source: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ConfigError(where, text.strip(), "a positive integer", source=source) from None
    if value < 1:
        raise ConfigError(where, value, "a positive integer", source=source)
    return value


def _check_sparsity(cells: list[str], where: str, source: str) -> None:
    for cell in cells:
        text = cell.strip()
        if ":" in text and text not in ("1:1",):
            raise ConfigError(
                where, text,
                "1:1 (SCALE-Sim's N:M sparsity is not modelled; describe sparse layers with a "
                "one_by_n weight_format in a YAML workload)", source=source)


def load_topology_csv(path: str | Path, *, field: str = "--workload") -> Workload:
    """Load a SCALE-Sim topology CSV (conv or GEMM form) as a :class:`Workload`.

    Raises:
        ConfigError: the file is missing, empty, or a row is malformed.
    """
    file = Path(path)
    source = str(path)
    if not file.is_file():
        raise ConfigError(field, source, "a path to an existing topology CSV")
    lines = [line.strip() for line in file.read_text().splitlines()]
    lines = [line for line in lines if line]
    if len(lines) < 2:
        raise ConfigError(field, source, "a CSV with a header row and at least one layer row")
    header = lines[0].lower()
    gemm = "ifmap" not in header and len([c for c in lines[1].split(",") if c.strip()]) <= 5
    layers: list[Conv2d | Linear] = []
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split(",")
        name = cells[0].strip()
        columns = _GEMM_COLUMNS if gemm else _CONV_COLUMNS
        if len(cells) < 1 + len(columns):
            raise ConfigError(f"line {number}", line, f"{1 + len(columns)} comma-separated "
                              f"columns: Layer, {', '.join(columns)}", source=source)
        values = [_positive_int(cells[1 + i], f"line {number}.{col}", source)
                  for i, col in enumerate(columns)]
        _check_sparsity(cells[1 + len(columns):], f"line {number}.sparsity", source)
        if gemm:
            m, n, k = values
            layers.append(Linear(name=name, in_features=k, out_features=n, batch=m))
            continue
        h, w, r, s, c, filters, stride = values
        depthwise = "DP" in name
        try:
            layers.append(Conv2d(
                name=name, in_channels=c, out_channels=c * filters if depthwise else filters,
                in_height=h, in_width=w, kernel_size=(r, s), stride=stride,
                groups=c if depthwise else 1, ceil_mode=True))
        except Exception as exc:  # pydantic wraps our ConfigError
            raise ConfigError(f"line {number}", line, f"a valid layer ({exc})".replace("\n", " "),
                              source=source) from None
    return Workload(name=file.stem, layers=tuple(layers))


def load_scalesim_cfg(path: str | Path, *, field: str = "--hw",
                      clock_mhz: float = 1000.0) -> Hardware:
    """Load a SCALE-Sim ``.cfg`` as a :class:`Hardware` (8-bit words, clock ``clock_mhz``).

    Raises:
        ConfigError: the file is missing, a required key is absent or invalid, or it asks for
            SCALE-Sim features that change timing and are not modelled (sparsity).
    """
    file = Path(path)
    source = str(path)
    if not file.is_file():
        raise ConfigError(field, source, "a path to an existing SCALE-Sim .cfg file")
    parser = configparser.ConfigParser()
    try:
        parser.read_string(file.read_text())
    except configparser.Error as exc:
        raise ConfigError(field, source, f"a valid .cfg file ({type(exc).__name__})") from None

    def get(section: str, key: str, default: str | None = None) -> str:
        if parser.has_option(section, key):
            return parser.get(section, key).strip().strip('"')
        if default is not None:
            return default
        raise ConfigError(f"{section}.{key}", "<missing>", "a value is required", source=source)

    arch = "architecture_presets"
    mode = get("run_presets", "InterfaceBandwidth", "CALC").upper()
    if mode not in ("USER", "CALC"):
        raise ConfigError("run_presets.InterfaceBandwidth", mode, "USER or CALC", source=source)
    bandwidth = None
    if mode == "USER":
        first = get(arch, "Bandwidth").split(",")[0]
        bandwidth = _positive_int(first, f"{arch}.Bandwidth", source)
    if get("sparsity", "SparsitySupport", "false").lower() == "true":
        raise ConfigError("sparsity.SparsitySupport", "true",
                          "false (use a one_by_n engine and weight_format instead)", source=source)
    data = {
        "name": get("general", "run_name", file.stem),
        "clock_mhz": clock_mhz,
        "word_bits": 8,
        "pe_array": {"rows": get(arch, "ArrayHeight"), "cols": get(arch, "ArrayWidth"),
                     "dataflow": get(arch, "Dataflow").lower()},
        "sram_kb": {"ifmap": get(arch, "IfmapSramSzkB"), "filter": get(arch, "FilterSramSzkB"),
                    "ofmap": get(arch, "OfmapSramSzkB")},
        "dram": {"bandwidth_words_per_cycle": bandwidth},
    }
    return validate(Hardware, data, source=source)
