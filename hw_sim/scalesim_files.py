"""SCALE-Sim's own input files: topology CSVs as workloads, ``.cfg`` files as hardware.

SCALE-Sim users reuse their files, and validation runs both tools on the very same inputs.

Topology CSV, conv form (one header row; IFMAP sizes already include padding)::

    Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,

An optional ``Sparsity`` cell after the last column, ``N:M``, makes the layer N:M sparse
(:class:`~a3cs_common.formats.NM`; ``M:M`` is dense), read as SCALE-Sim v3 reads it: SCALE-Sim
drops a row's last cell, so the ratio counts only when a comma follows it (``..., 1, 2:4,``);
in ``..., 1, 2:4`` it is ignored and the layer is dense, in both tools.

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
timing here and are ignored.  ``[sparsity] SparsitySupport: true`` with ``OptimizedMapping:
false`` (layer-wise N:M) is the hardware's ``n_m``; row-wise N:M (``OptimizedMapping: true``)
is refused: SCALE-Sim 3.0.0 then ignores the topology's ratio and draws each filter's N at
random, which is not a format a network can be trained for.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Callable
from pathlib import Path

from a3cs_common.errors import ConfigError
from a3cs_common.formats import NM, Dense, WeightFormat
from a3cs_common.io import atomic_write_text, read_text
from a3cs_common.schema import validate
from hw_sim.hardware import Hardware
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


def _sparsity(cells: list[str], where: str, source: str) -> WeightFormat:
    """The weight format of a row's ``N:M`` cell (``cells``: it or nothing; dense when absent
    or ``M:M``)."""
    texts = [cell.strip() for cell in cells]
    if not texts or not texts[0]:
        return Dense()
    allowed = "N:M with integers 1 <= N <= M (SCALE-Sim's layer-wise sparsity; M:M is dense)"
    match = re.fullmatch(r"(\d+)\s*:\s*(\d+)", texts[0])
    if match is None:
        raise ConfigError(where, ", ".join(texts), allowed, source=source)
    n, m = int(match[1]), int(match[2])
    if not 1 <= n <= m:
        raise ConfigError(where, texts[0], allowed, source=source)
    return Dense() if n == m else NM(n=n, m=m)


def load_topology_csv(path: str | Path, *, field: str = "--workload") -> Workload:
    """Load a SCALE-Sim topology CSV (conv or GEMM form) as a :class:`Workload`.

    Raises:
        ConfigError: the file is missing, empty, or a row is malformed.
    """
    source = str(path)
    text = read_text(path, field=field, expected="a path to an existing topology CSV")
    lines = [line.strip() for line in text.splitlines()]
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
        # SCALE-Sim ignores a row's last cell (rows end with a comma), then reads the first
        # extra cell of a GEMM row and the last of a conv row; so does this.
        extra = cells[1 + len(columns):-1]
        fmt = _sparsity(extra[:1] if gemm else extra[-1:], f"line {number}.Sparsity", source)
        if gemm:
            m, n, k = values
            layers.append(Linear(name=name, in_features=k, out_features=n, batch=m,
                                 weight_format=fmt))
            continue
        h, w, r, s, c, filters, stride = values
        depthwise = "DP" in name
        try:
            layers.append(Conv2d(
                name=name, in_channels=c, out_channels=c * filters if depthwise else filters,
                in_height=h, in_width=w, kernel_size=(r, s), stride=stride,
                groups=c if depthwise else 1, ceil_mode=True, weight_format=fmt))
        except Exception as exc:  # pydantic wraps our ConfigError
            raise ConfigError(f"line {number}", line, f"a valid layer ({exc})".replace("\n", " "),
                              source=source) from None
    return Workload(name=Path(path).stem, layers=tuple(layers))


def load_scalesim_cfg(path: str | Path, *, field: str = "--hw", clock_mhz: float = 1000.0,
                      memory_model: str = "default") -> Hardware:
    """Load a SCALE-Sim ``.cfg`` as a :class:`Hardware` (8-bit words, clock ``clock_mhz``).

    With ``memory_model="scalesim"`` and USER bandwidth the file must describe a memory
    system :mod:`hw_sim.scalesim_memory` reproduces: both ``[layout]`` SRAM bank bandwidths
    equal to ``Bandwidth`` (one figure for the three DRAM ports), a bank count that divides
    it (SCALE-Sim asserts that), no custom layouts and no Ramulator trace.

    Raises:
        ConfigError: the file is missing, a required key is absent or invalid, it asks for
            SCALE-Sim features that change timing and are not modelled (row-wise sparsity), or
            (``scalesim`` memory model) a memory-system key outside the above.
    """
    source = str(path)
    text = read_text(path, field=field, expected="a path to an existing SCALE-Sim .cfg file")
    parser = configparser.ConfigParser()
    try:
        parser.read_string(text)
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
    support = get("sparsity", "SparsitySupport", "false").lower()
    if support not in ("true", "false"):
        raise ConfigError("sparsity.SparsitySupport", support, "true or false", source=source)
    if support == "true":
        representation = get("sparsity", "SparseRep", "ellpack_block").lower()
        if representation not in ("csr", "csc", "ellpack_block"):
            raise ConfigError("sparsity.SparseRep", representation, "csr, csc or ellpack_block",
                              source=source)
        if get("sparsity", "OptimizedMapping", "false").lower() != "false":
            raise ConfigError(
                "sparsity.OptimizedMapping", get("sparsity", "OptimizedMapping"),
                "false (layer-wise N:M; row-wise mapping ignores the topology's N:M and draws "
                "each filter's N at random in SCALE-Sim 3.0.0, which hw_sim does not model)",
                source=source)
    if memory_model == "scalesim" and bandwidth is not None:
        _check_scalesim_memory_keys(get, bandwidth, source)
    for key in ("ArrayHeight", "ArrayWidth", "IfmapSramSzkB", "FilterSramSzkB",
                "OfmapSramSzkB"):  # named as the file names them, not as our schema does
        _positive_int(get(arch, key), f"{arch}.{key}", source)
    data = {
        "name": get("general", "run_name", Path(path).stem),
        "clock_mhz": clock_mhz,
        "word_bits": 8,
        "pe_array": {"rows": get(arch, "ArrayHeight"), "cols": get(arch, "ArrayWidth"),
                     "dataflow": get(arch, "Dataflow").lower()},
        "sram_kb": {"ifmap": get(arch, "IfmapSramSzkB"), "filter": get(arch, "FilterSramSzkB"),
                    "ofmap": get(arch, "OfmapSramSzkB")},
        "dram": {"bandwidth_words_per_cycle": bandwidth},
        "n_m": support == "true",
        "memory_model": memory_model,
    }
    return validate(Hardware, data, source=source)


def _check_scalesim_memory_keys(get: Callable[..., str], bandwidth: int, source: str) -> None:
    """The ``[layout]`` and ``[run_presets]`` keys SCALE-Sim's USER-mode memory system reads,
    limited to what :mod:`hw_sim.scalesim_memory` reproduces (see :func:`load_scalesim_cfg`)."""
    for operand in ("Ifmap", "Filter"):
        key = f"{operand}SRAMBankBandwidth"
        text = get("layout", key, str(bandwidth))
        value = _positive_int(text, f"layout.{key}", source)
        if value != bandwidth:
            raise ConfigError(f"layout.{key}", value, f"{bandwidth}, the Bandwidth (memory model "
                              "'scalesim' gives every DRAM port one bandwidth)", source=source)
        banks = _positive_int(get("layout", f"{operand}SRAMBankNum", "1"),
                              f"layout.{operand}SRAMBankNum", source)
        if bandwidth % banks:
            raise ConfigError(f"layout.{operand}SRAMBankNum", banks,
                              f"a divisor of the bandwidth {bandwidth} (SCALE-Sim asserts it)",
                              source=source)
        custom = get("layout", f"{operand}CustomLayout", "false").lower()
        if custom != "false":
            raise ConfigError(f"layout.{operand}CustomLayout", custom,
                              "False with memory model 'scalesim' (custom layouts change "
                              "SCALE-Sim's fetch order and are not reproduced)", source=source)
    ramulator = get("run_presets", "UseRamulatorTrace", "false").lower()
    if ramulator != "false":
        raise ConfigError("run_presets.UseRamulatorTrace", ramulator,
                          "False with memory model 'scalesim' (DRAM latencies from a Ramulator "
                          "trace are not reproduced)", source=source)


# ------------------------------------------------------------------------------------------
# Writing SCALE-Sim's files (so both tools run on the very same inputs)

_CONV_HEADER = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
                "Num Filter, Strides,")
_GEMM_HEADER = "Layer, M, N, K,"


def _topology_row(layer: Conv2d | Linear, index: int, gemm: bool) -> str:
    """One topology row; every row ends with a comma because SCALE-Sim drops the last cell."""
    where = f"layers[{index}]"
    fmt = layer.weight_format
    if not isinstance(fmt, Dense | NM):
        raise ConfigError(f"{where}.weight_format", fmt.type,
                          "dense or n_m (the formats SCALE-Sim models)")
    sparsity = f" {fmt.n}:{fmt.m}," if isinstance(fmt, NM) else ""
    if "," in layer.name:
        raise ConfigError(f"{where}.name", layer.name, "a name without commas")
    if gemm:
        return f"{layer.name}, {layer.batch}, {layer.out_features}, {layer.in_features},{sparsity}"
    depthwise = layer.groups > 1 and layer.groups == layer.in_channels
    if depthwise != ("DP" in layer.name):
        allowed = ("a name containing 'DP' (SCALE-Sim runs a row as depthwise exactly when its "
                   "name contains DP)" if depthwise else
                   "a name without 'DP' (SCALE-Sim would run the row as depthwise)")
        raise ConfigError(f"{where}.name", layer.name, allowed)
    if layer.groups > 1 and not depthwise:
        raise ConfigError(f"{where}.groups", layer.groups,
                          f"1 or in_channels={layer.in_channels} (SCALE-Sim has no other "
                          "grouped convolution)")
    if isinstance(layer, Linear):
        # M = batch output pixels of a 1x1 convolution over a batch x 1 "image"
        return (f"{layer.name}, {layer.batch}, 1, 1, 1, {layer.in_features}, "
                f"{layer.out_features}, 1,{sparsity}")
    if layer.batch != 1:
        raise ConfigError(f"{where}.batch", layer.batch,
                          "1 for a convolution (SCALE-Sim's topology has no batch)")
    if layer.stride[0] != layer.stride[1]:
        raise ConfigError(f"{where}.stride", list(layer.stride),
                          "equal strides (SCALE-Sim's topology has one Strides column)")
    (r, s), stride = layer.kernel_size, layer.stride[0]
    # The smallest input that gives this output size under both ceil and floor rounding: the
    # padded input with any rows and columns no window touches cut off.
    height = (layer.out_height - 1) * stride + r
    width = (layer.out_width - 1) * stride + s
    filters = layer.out_channels // layer.groups
    return (f"{layer.name}, {height}, {width}, {r}, {s}, {layer.in_channels}, {filters}, "
            f"{stride},{sparsity}")


def write_topology_csv(workload: Workload, path: str | Path) -> Path:
    """Write ``workload`` as a SCALE-Sim topology CSV that describes the same GEMMs.

    The GEMM form (``Layer, M, N, K``) is written when every layer is linear, the conv form
    otherwise.  A convolution's IFMAP size is its padded input trimmed to the rows and
    columns its windows touch, ``(out - 1) * stride + kernel``, so SCALE-Sim's ``ceil`` output
    size equals the layer's; a linear layer in the conv form is a 1x1 convolution over a
    ``batch x 1`` input.  :func:`load_topology_csv` reads the file back as layers with the
    same ``gemm_m``, ``gemm_n``, ``gemm_k`` and ``groups`` (padding becomes part of the input).

    Raises:
        ConfigError: a layer SCALE-Sim cannot describe: a weight format other than dense or n_m, a
            convolution with batch > 1 or unequal strides, groups other than 1 or depthwise,
            a depthwise layer whose name lacks ``DP`` (or a name with ``DP`` that is not
            depthwise), or a name with a comma.
    """
    gemm = all(isinstance(layer, Linear) for layer in workload.layers)
    header = _GEMM_HEADER if gemm else _CONV_HEADER
    if any(isinstance(layer.weight_format, NM) for layer in workload.layers):
        header += " Sparsity,"
    rows = [header]
    rows += [_topology_row(layer, i, gemm) for i, layer in enumerate(workload.layers)]
    return atomic_write_text(path, "\n".join(rows) + "\n")


def write_scalesim_cfg(hw: Hardware, path: str | Path) -> Path:
    """Write the PE array, SRAM sizes and DRAM bandwidth of ``hw`` as a SCALE-Sim v3 ``.cfg``.

    SCALE-Sim words are one byte, so each buffer is written as its capacity in words divided
    by 1024 ("kB"); for ``word_bits == 8`` :func:`load_scalesim_cfg` reads back the same array,
    buffers and bandwidth.  A finite bandwidth ``B`` becomes ``InterfaceBandwidth = USER``
    with ``Bandwidth = B`` *and* ``IfmapSRAMBankBandwidth = FilterSRAMBankBandwidth = B``:
    in USER mode SCALE-Sim v3 applies ``Bandwidth`` to the ofmap drain only and takes the
    ifmap and filter prefetch rates from those two ``[layout]`` keys.  Unlimited bandwidth
    becomes ``CALC`` (SCALE-Sim then never stalls).  The clock, the compressed-format engines,
    ``keep_weights_on_chip`` and the energy table have no SCALE-Sim counterpart and are not
    written.  ``run_name`` (SCALE-Sim's output folder) is the hardware name with characters
    other than letters, digits, ``_``, ``-`` and ``.`` replaced by ``_``.

    Raises:
        ConfigError: a buffer is not a whole number of 1024-word blocks (SCALE-Sim reads
            integer kB).
    """
    sizes = {}
    for operand in ("ifmap", "filter", "ofmap"):
        words = hw.sram_words(operand)
        if words % 1024:
            raise ConfigError(f"sram_kb.{operand}", getattr(hw.sram_kb, operand),
                              f"a size of whole 1024-word blocks (SCALE-Sim reads integer kB "
                              f"of one-byte words; this buffer holds {words} words)")
        sizes[operand] = words // 1024
    bandwidth = hw.dram.bandwidth_words_per_cycle
    # Unused in CALC mode, but SCALE-Sim parses the [layout] bank bandwidths in every mode.
    bank_bandwidth = bandwidth if bandwidth is not None else 10
    arr = hw.pe_array
    lines = [
        f"# SCALE-Sim v3 configuration written by hw_sim from hardware '{hw.name}'",
        "[general]",
        f"run_name = {re.sub(r'[^A-Za-z0-9_.-]', '_', hw.name)}",
        "",
        "[architecture_presets]",
        f"ArrayHeight = {arr.rows}",
        f"ArrayWidth = {arr.cols}",
        f"IfmapSramSzkB = {sizes['ifmap']}",
        f"FilterSramSzkB = {sizes['filter']}",
        f"OfmapSramSzkB = {sizes['ofmap']}",
        "IfmapOffset = 0",
        "FilterOffset = 10000000",
        "OfmapOffset = 20000000",
        *([f"Bandwidth = {bandwidth}"] if bandwidth is not None else []),
        f"Dataflow = {arr.dataflow}",
        "ReadRequestBuffer = 32",
        "WriteRequestBuffer = 32",
        "",
        "[layout]",
        "IfmapCustomLayout = False",
        f"IfmapSRAMBankBandwidth = {bank_bandwidth}",
        "IfmapSRAMBankNum = 1",
        "IfmapSRAMBankPort = 2",
        "FilterCustomLayout = False",
        f"FilterSRAMBankBandwidth = {bank_bandwidth}",
        "FilterSRAMBankNum = 1",
        "FilterSRAMBankPort = 2",
        "",
        "[sparsity]",
        *(["SparsitySupport = true", "SparseRep = ellpack_block", "OptimizedMapping = false",
           "BlockSize = 4", "RandomNumberGeneratorSeed = 40"] if hw.n_m
          else ["SparsitySupport = false"]),
        "",
        "[run_presets]",
        f"InterfaceBandwidth = {'CALC' if bandwidth is None else 'USER'}",
        "UseRamulatorTrace = False",
    ]
    return atomic_write_text(path, "\n".join(lines) + "\n")
