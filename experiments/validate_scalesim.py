"""Validate hw_sim against SCALE-Sim v3 on the very same topology CSVs and ``.cfg`` files.

For each topology, PE array and dataflow, both tools read the same files:

* a ``CALC`` cfg (unlimited bandwidth; SCALE-Sim never stalls): per-layer compute cycles
  (must be equal) and SRAM read/write counts;
* a ``USER`` cfg (``--bandwidth`` words/cycle): total cycles with a finite DRAM bandwidth
  (the two memory models differ; the error is reported and the differences documented).

SCALE-Sim (PyPI ``scalesim`` 3.0.0) runs in its own virtual environment with ``numpy<2.4``
(it crashes with numpy 2.4), created on first use at ``--venv`` (default
``~/.cache/a3cs/scalesim-venv``), one subprocess per run through its Python API with traces
off (the CLI ignores ``-s``).  The wheel lacks the ``layouts/`` folder that SCALE-Sim opens
even when custom layouts are off, so a header-only layout file is written.  The ``CALC`` run
of a topology is one process (its wall time and peak RSS are what a user sees); ``USER`` runs
are one process per layer, each with ``--scalesim-timeout``, because SCALE-Sim's USER-mode
prefetcher can take hours on one layer (see the generated document).  Every SCALE-Sim result
is cached under ``experiments/results/scalesim_cache/`` keyed by the SHA-256 of the topology
and cfg contents, so reruns are cheap.

Outputs: ``docs/hw_sim_validation.md`` (generated) and, in ``experiments/results/``,
``scalesim_validation_layers.csv`` (one row per layer and case), ``scalesim_validation_runs.csv``
(wall time and peak memory per case) and the topology and cfg files both tools read
(``scalesim_inputs/``).

    python experiments/validate_scalesim.py                      # everything (hours, once)
    python experiments/validate_scalesim.py --no-bandwidth-for resnet18 \\
        --scalesim-timeout 120                                     # no ResNet-18 USER runs;
                                                                   # slow layers: `timeout`
    python experiments/validate_scalesim.py --topologies minatar_reference gemm_folds \\
        --dataflows ws --venv /work/scalesim-venv                  # a quick look
    python experiments/validate_scalesim.py --n-m-only --venv /work/scalesim-venv \\
        --n-m-regression-data tests/data/scalesim_n_m_cycles.csv   # N:M section only

N:M sparsity (layer-wise, SCALE-Sim's ``SparsitySupport = true``, ``OptimizedMapping =
false``): the ``--n-m-topologies`` (layers carrying ``n_m`` weight formats, written with a
``Sparsity`` column) run in CALC mode on hardware with ``n_m: true`` on the same arrays and
dataflows; compute cycles must be equal, SRAM counts are compared with SCALE-Sim's ws
ifmap-read factor m/n allowed for.  They make the document's "N:M sparsity (layer-wise)"
section, between two HTML comment markers; ``--n-m-only`` runs only them and replaces that
section of the existing document in place (the dense cases and their tables are left as
they are), and ``--n-m-regression-data`` writes their rows for ``tests/test_scalesim_n_m.py``.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import io
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from a3cs_common.cli import OneLineParser, finite_float
from a3cs_common.errors import ConfigError
from a3cs_common.formats import NM
from a3cs_common.io import atomic_write_text, check_output_path, read_text
from a3cs_common.schema import validate
from hw_sim.files import load_workload
from hw_sim.hardware import Hardware
from hw_sim.report import LayerReport
from hw_sim.scalesim_files import (
    load_scalesim_cfg,
    load_topology_csv,
    write_scalesim_cfg,
    write_topology_csv,
)
from hw_sim.scalesim_reference import CHILD_SCRIPT, SCALESIM_REQUIREMENTS, scalesim_versions
from hw_sim.simulate import simulate
from hw_sim.workload import Conv2d, Linear, Workload

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "experiments" / "results"
DOC = REPO / "docs" / "hw_sim_validation.md"
DEFAULT_VENV = Path.home() / ".cache" / "a3cs" / "scalesim-venv"
# Bump when what a cached SCALE-Sim record holds changes.
CACHE_FORMAT = 1

DATAFLOWS = ("ws", "os", "is")


@dataclass(frozen=True)
class ArraySpec:
    """A PE array and its buffers (KiB of one-byte words per operand, double-buffered)."""

    rows: int
    cols: int
    sram_kb: int

    @property
    def name(self) -> str:
        return f"{self.rows}x{self.cols}"


ARRAYS = {
    "32x32": ArraySpec(32, 32, 64),  # SCALE-Sim's configs/scale.cfg
    "8x8": ArraySpec(8, 8, 16),
    "16x8": ArraySpec(16, 8, 16),
}

# GEMMs (M output rows, N filters, K reduction) whose extents leave partial folds on the
# arrays above, in both array dimensions and for every dataflow.
GEMM_FOLDS = (("g_mlp_in", 1, 64, 17), ("g_tall", 37, 20, 70), ("g_skinny", 100, 33, 9),
              ("g_wide", 5, 130, 41), ("g_square", 64, 64, 64))

TOPOLOGIES = ("resnet18", "minatar_reference", "mlp_policy", "gemm_folds")

# N:M topologies (layer-wise sparsity).  MinAtar's reference agent (conv 3x3 over Breakout's
# 4 channels, fc 1024->128, policy and value heads) with a ratio per layer, and its conv over
# Freeway's 7 channels (K = 63, which no m divides); GEMMs with awkward extents, K < m,
# K mod m != 0 and n not dividing m.  (name, ratio n:m, layer)
_MINATAR_N_M = (
    ("conv_1of2", (1, 2), dict(in_channels=4, out_channels=16, in_height=10, in_width=10)),
    ("conv_f_2of4", (2, 4), dict(in_channels=7, out_channels=16, in_height=10, in_width=10)),
    ("conv_f_1of8", (1, 8), dict(in_channels=7, out_channels=16, in_height=10, in_width=10)),
    ("fc_2of4", (2, 4), (1024, 128)),
    ("fc_1of4", (1, 4), (1024, 128)),
    ("fc_2of8", (2, 8), (1024, 128)),
    ("policy_1of8", (1, 8), (128, 3)),
    ("value_2of8", (2, 8), (128, 1)),
)
# (name, ratio, M, N, K)
GEMM_N_M = (("g_mlp_in_1of2", (1, 2), 1, 64, 17), ("g_tall_2of4", (2, 4), 37, 20, 70),
            ("g_skinny_1of4", (1, 4), 100, 33, 9), ("g_wide_2of8", (2, 8), 5, 130, 41),
            ("g_square_1of8", (1, 8), 64, 64, 64), ("g_tail_3of8", (3, 8), 7, 9, 13),
            ("g_short_k_1of4", (1, 4), 12, 40, 3),
            ("g_frac_3of4", (3, 4), 7, 9, 13))  # SCALE-Sim's ws ifmap reads: fractional

N_M_TOPOLOGIES = ("minatar_n_m", "gemm_n_m")
N_M_BEGIN = "<!-- BEGIN n_m section: generated; `--n-m-only` replaces it in place -->"
N_M_END = "<!-- END n_m section -->"


# -------------------------------------------------------------------------------------------
# Inputs: the topology and cfg files both tools read


def topology_file(name: str, inputs: Path) -> Path:
    """The SCALE-Sim topology CSV of ``name`` (written from the project's workload if needed)."""
    if name == "resnet18":
        return REPO / "experiments" / "workloads" / "resnet18.csv"
    if name in ("minatar_reference", "mlp_policy"):
        workload = load_workload(str(REPO / "experiments" / "workloads" / f"{name}.yaml"))
    elif name == "gemm_folds":
        workload = Workload(name=name, layers=tuple(
            Linear(name=layer, batch=m, out_features=n, in_features=k)
            for layer, m, n, k in GEMM_FOLDS))
    else:
        raise ConfigError("--topologies", name, ", ".join(TOPOLOGIES))
    path = inputs / f"{name}.csv"
    write_topology_csv(workload, path)
    return path


def n_m_workload(name: str) -> Workload:
    """The hw_sim workload of an N:M topology (its layers carry ``n_m`` weight formats)."""
    if name == "minatar_n_m":
        layers: list[Conv2d | Linear] = []
        for layer, (n, m), shape in _MINATAR_N_M:
            fmt = NM(n=n, m=m)
            if isinstance(shape, dict):
                layers.append(Conv2d(name=layer, kernel_size=3, weight_format=fmt, **shape))
            else:
                layers.append(Linear(name=layer, in_features=shape[0], out_features=shape[1],
                                     weight_format=fmt))
        return Workload(name=name, layers=tuple(layers))
    if name == "gemm_n_m":
        return Workload(name=name, layers=tuple(
            Linear(name=layer, batch=m_, out_features=n_, in_features=k_,
                   weight_format=NM(n=n, m=m))
            for layer, (n, m), m_, n_, k_ in GEMM_N_M))
    raise ConfigError("--n-m-topologies", name, ", ".join(N_M_TOPOLOGIES))


def n_m_topology_file(name: str, inputs: Path) -> Path:
    """The SCALE-Sim topology CSV of an N:M topology, written by ``write_topology_csv``."""
    return write_topology_csv(n_m_workload(name), inputs / f"{name}.csv")


def is_gemm_topology(path: Path) -> bool:
    """Whether a topology CSV is in SCALE-Sim's GEMM form (``Layer, M, N, K``)."""
    return all(isinstance(layer, Linear) for layer in load_topology_csv(path).layers)


def hardware(array: ArraySpec, dataflow: str, bandwidth: int | None) -> Hardware:
    """The hardware of one case (``bandwidth=None``: unlimited, SCALE-Sim's CALC mode)."""
    mode = "calc" if bandwidth is None else f"bw{bandwidth}"
    return validate(Hardware, {
        "name": f"{array.name}_{dataflow}_{mode}", "clock_mhz": 1000.0, "word_bits": 8,
        "pe_array": {"rows": array.rows, "cols": array.cols, "dataflow": dataflow},
        "sram_kb": {"ifmap": array.sram_kb, "filter": array.sram_kb, "ofmap": array.sram_kb},
        "dram": {"bandwidth_words_per_cycle": bandwidth},
    })


def n_m_hardware(array: ArraySpec, dataflow: str) -> Hardware:
    """A CALC case's hardware with layer-wise N:M skipping (``n_m: true``)."""
    calc = hardware(array, dataflow, None)
    return validate(Hardware, {**calc.model_dump(mode="json"), "name": f"{calc.name}_n_m",
                               "n_m": True})


def topology_rows(path: Path) -> tuple[str, list[str]]:
    """Header and layer rows of a topology file, as SCALE-Sim reads them (blank lines skipped)."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return lines[0], lines[1:]


# -------------------------------------------------------------------------------------------
# SCALE-Sim: its own venv, one subprocess per run, results cached by content hash


def ensure_scalesim_venv(venv: Path) -> dict[str, str]:
    """Create ``venv`` with SCALE-Sim 3.0.0 and numpy<2.4 unless it exists.

    Returns:
        The installed versions of ``scalesim`` and ``numpy``.

    Raises:
        ConfigError: the venv exists but does not hold those versions.
    """
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating SCALE-Sim venv at {venv} ({' '.join(SCALESIM_REQUIREMENTS)})")
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *SCALESIM_REQUIREMENTS],
                       check=True)
    return scalesim_versions(venv)


@dataclass
class ScaleSimRun:
    """One SCALE-Sim run: its per-layer reports, or why there are none.

    ``layers`` holds, per SCALE-Sim layer, the COMPUTE_REPORT.csv and
    DETAILED_ACCESS_REPORT.csv fields by name.  ``status``: ok, timeout or error.
    ``cpu_s``: user + system CPU seconds of the process (``None`` in records cached before
    it was kept).
    """

    status: str
    wall_s: float
    peak_rss_mb: float
    timeout_s: float
    layers: list[dict[str, float]]
    message: str = ""
    cpu_s: float | None = None


def _read_report(path: Path) -> list[dict[str, float]]:
    rows = list(csv.reader(io.StringIO(path.read_text())))
    header = [cell.strip() for cell in rows[0] if cell.strip()]
    return [{key: float(cell) for key, cell in zip(header, row, strict=False)}
            for row in rows[1:] if row]


def run_scalesim(python: Path, cfg: Path, topology: Path, timeout_s: float) -> ScaleSimRun:
    """Run SCALE-Sim once in a subprocess; measure its wall time and peak RSS (``wait4``)."""
    with tempfile.TemporaryDirectory(prefix="scalesim_") as tmp:
        work = Path(tmp)
        layout = work / "layout.csv"
        layout.write_text("Layer name,\n")  # read even with custom layouts off
        form = "gemm" if is_gemm_topology(topology) else "conv"
        log = work / "stderr.txt"
        with log.open("w") as err:
            start = time.perf_counter()
            child = subprocess.Popen(
                [str(python), str(CHILD_SCRIPT), str(cfg), str(topology), str(layout),
                 str(work / "out"), form, "full"], stdout=subprocess.DEVNULL, stderr=err, cwd=work)
            status = "ok"
            while True:
                pid, code, usage = os.wait4(child.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() - start > timeout_s:
                    child.kill()
                    pid, code, usage = os.wait4(child.pid, 0)
                    status = "timeout"
                    break
                time.sleep(0.05)
            wall = time.perf_counter() - start
            child.returncode = code  # reaped by wait4; keep Popen from waiting again
        peak_mb = usage.ru_maxrss / 1024  # KiB on Linux
        cpu = usage.ru_utime + usage.ru_stime
        if status == "ok" and code != 0:
            tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
            return ScaleSimRun("error", wall, peak_mb, timeout_s, [], tail[0], cpu)
        if status == "timeout":
            return ScaleSimRun("timeout", wall, peak_mb, timeout_s, [], cpu_s=cpu)
        (report_dir,) = (work / "out").iterdir()
        compute = _read_report(report_dir / "COMPUTE_REPORT.csv")
        access = _read_report(report_dir / "DETAILED_ACCESS_REPORT.csv")
        layers = [{**c, **a} for c, a in zip(compute, access, strict=True)]
        return ScaleSimRun("ok", wall, peak_mb, timeout_s, layers, cpu_s=cpu)


class ScaleSimCache:
    """SCALE-Sim results on disk, keyed by the contents of the files a run reads."""

    def __init__(self, folder: Path, python: Path, versions: dict[str, str]):
        self.folder = folder
        self.python = python
        self.versions = versions

    def key(self, cfg: Path, topology: Path) -> str:
        digest = hashlib.sha256()
        for part in (f"format {CACHE_FORMAT}", json.dumps(self.versions, sort_keys=True),
                     cfg.read_text(), topology.read_text()):
            digest.update(part.encode() + b"\0")
        return digest.hexdigest()[:24]

    def run(self, cfg: Path, topology: Path, timeout_s: float) -> ScaleSimRun:
        """The cached result, or a fresh run (also rerun: a timeout under a shorter limit)."""
        path = self.folder / f"{self.key(cfg, topology)}.json"
        if path.exists():
            cached = ScaleSimRun(**json.loads(path.read_text()))
            if cached.status == "ok" or cached.timeout_s >= timeout_s:
                return cached
        result = run_scalesim(self.python, cfg, topology, timeout_s)
        if result.status != "error":
            atomic_write_text(path, json.dumps(asdict(result), indent=1) + "\n")
        return result


# -------------------------------------------------------------------------------------------
# hw_sim timing in a subprocess (peak RSS comparable with SCALE-Sim's)

_HW_SIM_CHILD = r"""
import json, resource, statistics, sys, time
from hw_sim.scalesim_files import load_scalesim_cfg, load_topology_csv
from hw_sim.simulate import simulate
topology, cfg, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
simulate(load_topology_csv(topology), load_scalesim_cfg(cfg))  # warm-up: lazy imports
times = []
for _ in range(repeats):
    start = time.perf_counter()
    report = simulate(load_topology_csv(topology), load_scalesim_cfg(cfg))
    times.append(time.perf_counter() - start)
print(json.dumps({"median_s": statistics.median(times), "times_s": times,
                  "total_cycles": report.total_cycles,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure_hw_sim(topology: Path, cfg: Path, repeats: int) -> dict[str, Any]:
    """hw_sim on SCALE-Sim's files in a fresh process: median wall time of ``repeats`` runs
    after one warm-up run (loading both files and simulating; s), the simulated total cycles
    and the process's peak RSS (MB, interpreter and imports included, as for SCALE-Sim)."""
    out = subprocess.run([sys.executable, "-c", _HW_SIM_CHILD, str(topology), str(cfg),
                          str(repeats)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


# -------------------------------------------------------------------------------------------
# One case: a topology on one array and dataflow, in both tools


@dataclass(frozen=True)
class LayerRow:
    """One layer of one case in both tools (cycles follow SCALE-Sim: last busy cycle)."""

    topology: str
    array: str
    dataflow: str
    layer: str
    gemm_m: int
    gemm_n: int
    gemm_k: int
    folds: int
    hw_sim_compute_cycles: int
    scalesim_compute_cycles: int
    compute_equal: bool
    hw_sim_ifmap_sram_reads: int
    scalesim_ifmap_sram_reads: int
    hw_sim_filter_sram_reads: int
    scalesim_filter_sram_reads: int
    hw_sim_ofmap_sram_writes: int
    scalesim_ofmap_sram_writes: int
    hw_sim_ofmap_sram_reads: int
    sram_equal: bool
    bandwidth_words_per_cycle: int | None
    hw_sim_total_cycles_bw: int | None
    hw_sim_stall_cycles_bw: int | None
    scalesim_total_cycles_bw: int | None
    scalesim_total_incl_prefetch_bw: int | None
    scalesim_stall_cycles_bw: int | None
    scalesim_bw_status: str
    total_error_pct: float | None


@dataclass(frozen=True)
class RunRow:
    """Whole-topology cost of one case in each tool."""

    topology: str
    array: str
    dataflow: str
    layers: int
    compute_equal_layers: int
    sram_equal_layers: int
    hw_sim_compute_cycles: int
    scalesim_compute_cycles: int
    scalesim_calc_wall_s: float
    scalesim_calc_peak_rss_mb: float
    hw_sim_wall_s: float
    hw_sim_peak_rss_mb: float
    scalesim_user_wall_s: float | None
    scalesim_user_peak_rss_mb: float | None
    bw_layers_ok: int
    hw_sim_total_cycles_bw: int | None
    scalesim_total_incl_prefetch_bw: int | None
    total_error_pct: float | None


def folds(layer: Any, array: ArraySpec, dataflow: str) -> int:
    """Folds of a layer (all groups): SCALE-Sim's row folds x column folds."""
    m, n, k = layer.gemm_m, layer.gemm_n, layer.gemm_k
    rows, cols = {"ws": (k, n), "is": (k, m), "os": (m, n)}[dataflow]
    return layer.groups * math.ceil(rows / array.rows) * math.ceil(cols / array.cols)


def sram_counts_equal(hw: LayerReport, ss: dict[str, float], dataflow: str, fold_count: int,
                      array: ArraySpec) -> bool:
    """SRAM counts defined the same way in both tools are equal.  SCALE-Sim's os dataflow
    adds ``rows + cols`` of the array to its ofmap write count for every fold (a counting
    slip in systolic_compute_os.py), so that is allowed for, exactly."""
    extra = fold_count * (array.rows + array.cols) if dataflow == "os" else 0
    return (hw.ifmap_sram_reads == ss["SRAM IFMAP Reads"]
            and hw.filter_sram_reads == ss["SRAM Filter Reads"]
            and hw.ofmap_sram_writes + extra == ss["SRAM OFMAP Writes"])


def compute_cycles_of(ss: dict[str, float]) -> int:
    """SCALE-Sim's stall-free cycles: its 'Total Cycles' less its stalls (zero in CALC)."""
    return int(ss["Total Cycles"] - ss["Stall Cycles"])


def error_pct(ours: int | None, reference: int | None) -> float | None:
    if ours is None or not reference:
        return None
    return 100.0 * (ours - reference) / reference


def run_calc(topology: Path, hw: Hardware, cache: ScaleSimCache, inputs: Path, bar: tqdm,
             label: str) -> tuple[list[LayerReport], ScaleSimRun, Path]:
    """hw_sim and SCALE-Sim (CALC: no stalls) on ``topology`` with the cfg written for ``hw``
    (returned too); both tools read the same two files."""
    cfg = write_scalesim_cfg(hw, inputs / f"{hw.name}.cfg")
    ours = list(simulate(load_topology_csv(topology), load_scalesim_cfg(cfg)).layers)
    bar.set_postfix_str(label)
    calc = cache.run(cfg, topology, timeout_s=float("inf"))
    if calc.status != "ok":
        raise RuntimeError(f"SCALE-Sim failed on {topology} with {cfg}: {calc.message}")
    if len(calc.layers) != len(ours):
        raise RuntimeError(f"{topology}: SCALE-Sim reports {len(calc.layers)} layers, hw_sim "
                           f"{len(ours)} (depthwise rows are split per channel by SCALE-Sim)")
    bar.update()
    return ours, calc, cfg


def run_case(name: str, topology: Path, array: ArraySpec, dataflow: str, bandwidth: int | None,
             cache: ScaleSimCache, inputs: Path, timeout_s: float, repeats: int,
             bar: tqdm) -> tuple[list[LayerRow], RunRow]:
    """Both tools on one topology, array and dataflow."""
    workload = load_topology_csv(topology)
    ours, calc, calc_cfg = run_calc(topology, hardware(array, dataflow, None), cache, inputs,
                                    bar, f"SCALE-Sim {name} {array.name} {dataflow} CALC")

    user_runs: list[ScaleSimRun | None] = [None] * len(ours)
    ours_bw: Sequence[LayerReport | None] = [None] * len(ours)
    user_cfg = None
    if bandwidth is not None:
        user_hw = hardware(array, dataflow, bandwidth)
        user_cfg = write_scalesim_cfg(user_hw, inputs / f"{user_hw.name}.cfg")
        ours_bw = simulate(workload, load_scalesim_cfg(user_cfg)).layers
        header, rows = topology_rows(topology)
        with tempfile.TemporaryDirectory(prefix="layers_") as tmp:
            for i, row in enumerate(rows):
                single = Path(tmp) / f"{name}_{i:02d}.csv"  # the topology's own row, alone
                single.write_text(f"{header}\n{row}\n")
                bar.set_postfix_str(f"SCALE-Sim {name} {array.name} {dataflow} USER layer {i}")
                user_runs[i] = cache.run(user_cfg, single, timeout_s)
                bar.update()

    layer_rows = []
    for i, (layer, hw, ss) in enumerate(zip(workload.layers, ours, calc.layers, strict=True)):
        user = user_runs[i]
        bw = ours_bw[i]
        ss_bw = user.layers[0] if user is not None and user.status == "ok" else None
        fold_count = folds(layer, array, dataflow)
        layer_rows.append(LayerRow(
            topology=name, array=array.name, dataflow=dataflow, layer=layer.name,
            gemm_m=layer.gemm_m, gemm_n=layer.gemm_n, gemm_k=layer.gemm_k, folds=fold_count,
            hw_sim_compute_cycles=hw.compute_cycles,
            scalesim_compute_cycles=compute_cycles_of(ss),
            compute_equal=hw.compute_cycles == compute_cycles_of(ss),
            hw_sim_ifmap_sram_reads=hw.ifmap_sram_reads,
            scalesim_ifmap_sram_reads=int(ss["SRAM IFMAP Reads"]),
            hw_sim_filter_sram_reads=hw.filter_sram_reads,
            scalesim_filter_sram_reads=int(ss["SRAM Filter Reads"]),
            hw_sim_ofmap_sram_writes=hw.ofmap_sram_writes,
            scalesim_ofmap_sram_writes=int(ss["SRAM OFMAP Writes"]),
            hw_sim_ofmap_sram_reads=hw.ofmap_sram_reads,
            sram_equal=sram_counts_equal(hw, ss, dataflow, fold_count, array),
            bandwidth_words_per_cycle=bandwidth,
            hw_sim_total_cycles_bw=bw.total_cycles if bw is not None else None,
            hw_sim_stall_cycles_bw=bw.stall_cycles if bw is not None else None,
            scalesim_total_cycles_bw=int(ss_bw["Total Cycles"]) if ss_bw else None,
            scalesim_total_incl_prefetch_bw=(
                int(ss_bw["Total Cycles (incl. prefetch)"]) if ss_bw else None),
            scalesim_stall_cycles_bw=int(ss_bw["Stall Cycles"]) if ss_bw else None,
            scalesim_bw_status=user.status if user is not None else "not run",
            total_error_pct=error_pct(
                bw.total_cycles if bw is not None else None,
                int(ss_bw["Total Cycles (incl. prefetch)"]) if ss_bw else None),
        ))

    timing = measure_hw_sim(topology, user_cfg or calc_cfg, repeats)
    ok = [r for r in layer_rows if r.scalesim_bw_status == "ok"]
    done_user = [u for u in user_runs if u is not None]
    hw_total = sum(r.hw_sim_total_cycles_bw for r in ok) if ok else None
    ss_total = sum(r.scalesim_total_incl_prefetch_bw for r in ok) if ok else None
    run_row = RunRow(
        topology=name, array=array.name, dataflow=dataflow, layers=len(layer_rows),
        compute_equal_layers=sum(r.compute_equal for r in layer_rows),
        sram_equal_layers=sum(r.sram_equal for r in layer_rows),
        hw_sim_compute_cycles=sum(r.hw_sim_compute_cycles for r in layer_rows),
        scalesim_compute_cycles=sum(r.scalesim_compute_cycles for r in layer_rows),
        scalesim_calc_wall_s=calc.wall_s, scalesim_calc_peak_rss_mb=calc.peak_rss_mb,
        hw_sim_wall_s=timing["median_s"], hw_sim_peak_rss_mb=timing["peak_rss_mb"],
        scalesim_user_wall_s=sum(u.wall_s for u in done_user) if done_user else None,
        scalesim_user_peak_rss_mb=max(u.peak_rss_mb for u in done_user) if done_user else None,
        bw_layers_ok=len(ok), hw_sim_total_cycles_bw=hw_total,
        scalesim_total_incl_prefetch_bw=ss_total,
        total_error_pct=error_pct(hw_total, ss_total),
    )
    return layer_rows, run_row


# -------------------------------------------------------------------------------------------
# N:M sparsity (layer-wise): CALC runs on hardware with n_m: true


@dataclass(frozen=True)
class NMRow:
    """One layer of one N:M case in both tools.  ``scalesim_ifmap_sram_reads`` is SCALE-Sim's
    number as it reports it (a float in ws, see ``ifmap_factor``)."""

    topology: str
    array: str
    dataflow: str
    layer: str
    ratio: str
    gemm_m: int
    gemm_n: int
    gemm_k: int
    k_compressed: int
    hw_sim_compute_cycles: int
    scalesim_compute_cycles: int
    compute_equal: bool
    hw_sim_ifmap_sram_reads: int
    scalesim_ifmap_sram_reads: float
    ifmap_factor: float  # SCALE-Sim's ifmap reads = hw_sim's x this (m/n in ws, else 1)
    ifmap_explained: bool  # SCALE-Sim's ifmap reads == hw_sim's x ifmap_factor
    hw_sim_filter_sram_reads: int
    scalesim_filter_sram_reads: int
    hw_sim_ofmap_sram_writes: int
    scalesim_ofmap_sram_writes: int
    filter_ofmap_equal: bool  # filter reads and ofmap writes (os: up to the dense slip)
    scalesim_wall_s: float


def ws_ifmap_factor(dataflow: str, fmt: NM) -> float:
    """SCALE-Sim's factor on ws ifmap SRAM reads of an N:M layer: ``systolic_compute_ws``
    adds ``rows x columns x (m / n)`` per fold ("a single block of input is shared among M/N
    rows ... read M/N times"), so it counts the reads of the dense window; 1 elsewhere."""
    return fmt.m / fmt.n if dataflow == "ws" else 1.0


def run_n_m_case(name: str, topology: Path, array: ArraySpec, dataflow: str,
                 cache: ScaleSimCache, inputs: Path, bar: tqdm) -> list[NMRow]:
    """Both tools on one N:M topology, array and dataflow (CALC: no stalls)."""
    workload = load_topology_csv(topology)
    ours, calc, _ = run_calc(topology, n_m_hardware(array, dataflow), cache, inputs, bar,
                             f"SCALE-Sim {name} {array.name} {dataflow} CALC N:M")
    rows = []
    for layer, hw_layer, ss in zip(workload.layers, ours, calc.layers, strict=True):
        fmt = layer.weight_format
        if not isinstance(fmt, NM):
            raise RuntimeError(f"{topology}: layer {layer.name} read as {fmt.type}, not n_m")
        factor = ws_ifmap_factor(dataflow, fmt)
        ss_ifmap = ss["SRAM IFMAP Reads"]
        expected_ifmap = hw_layer.ifmap_sram_reads * factor
        slip = folds(layer, array, dataflow) * (array.rows + array.cols) if dataflow == "os" \
            else 0
        rows.append(NMRow(
            topology=name, array=array.name, dataflow=dataflow, layer=layer.name,
            ratio=fmt.label(), gemm_m=layer.gemm_m, gemm_n=layer.gemm_n, gemm_k=layer.gemm_k,
            k_compressed=fmt.systolic_reduction(layer),
            hw_sim_compute_cycles=hw_layer.compute_cycles,
            scalesim_compute_cycles=compute_cycles_of(ss),
            compute_equal=hw_layer.compute_cycles == compute_cycles_of(ss),
            hw_sim_ifmap_sram_reads=hw_layer.ifmap_sram_reads,
            scalesim_ifmap_sram_reads=ss_ifmap, ifmap_factor=factor,
            ifmap_explained=abs(ss_ifmap - expected_ifmap) <= 1e-9 * max(1.0, expected_ifmap),
            hw_sim_filter_sram_reads=hw_layer.filter_sram_reads,
            scalesim_filter_sram_reads=int(ss["SRAM Filter Reads"]),
            hw_sim_ofmap_sram_writes=hw_layer.ofmap_sram_writes,
            scalesim_ofmap_sram_writes=int(ss["SRAM OFMAP Writes"]),
            filter_ofmap_equal=(hw_layer.filter_sram_reads == ss["SRAM Filter Reads"]
                                and hw_layer.ofmap_sram_writes + slip
                                == ss["SRAM OFMAP Writes"]),
            scalesim_wall_s=calc.wall_s,
        ))
    return rows


def _reads(value: float) -> str:
    """A SCALE-Sim read count: an integer where it is one, else two decimals."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _sram_note(r: NMRow) -> str:
    if not (r.ifmap_explained and r.filter_ofmap_equal):
        return "**differ**"
    if r.ifmap_factor != 1.0:
        n, m = r.ratio.split(":")
        factor = f"{r.ifmap_factor:g}" if r.ifmap_factor.is_integer() else f"{m}/{n}"
        return f"ifmap x {factor} (m/n), rest equal"
    return "equal (os ofmap slip)" if r.dataflow == "os" else "equal"


def n_m_section(rows: list[NMRow], command: str, versions: dict[str, str],
                in_place: bool) -> str:
    """The document's N:M section, markers included (``in_place``: regenerated alone by
    ``--n-m-only``, so it says where its command differs from the header's)."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    equal = sum(r.compute_equal for r in rows)
    ws = [r for r in rows if r.dataflow == "ws"]
    other = [r for r in rows if r.dataflow != "ws"]
    ifmap_same = sum(r.ifmap_explained for r in other)
    ws_factor = sum(r.ifmap_explained for r in ws)
    filter_ofmap = sum(r.filter_ofmap_equal for r in rows)
    topologies = list(dict.fromkeys(r.topology for r in rows))
    where = (
        f"This section was regenerated in place by `{command}` on {now} ({platform.node()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, SCALE-Sim "
        f"{versions['scalesim']} with numpy {versions['numpy']}); the rest of the document "
        "comes from the command in the header (which, rerun, regenerates this section too).  "
        "`--n-m-only` runs only the N:M cases: the "
        "dense cases' SCALE-Sim results are all cached, but rerunning them re-measures the "
        "hw_sim timings of the cost table, which are kept as they were measured."
        if in_place else f"Generated with the rest of the document by `{command}` on {now}.")
    lines = [
        N_M_BEGIN,
        "## N:M sparsity (layer-wise)",
        "",
        where,
        "",
        "Both tools read the same files (`experiments/results/scalesim_inputs/`): "
        f"{', '.join(f'`{t}.csv`' for t in topologies)}, written by `write_topology_csv` from "
        "hw_sim workloads whose layers carry `n_m` weight formats (a `Sparsity` column, each "
        "row ending `..., n:m,`), and `<array>_<dataflow>_calc_n_m.cfg`, written by "
        "`write_scalesim_cfg` from hardware with `n_m: true` (`[sparsity] SparsitySupport = "
        "true`, `SparseRep = ellpack_block`, `OptimizedMapping = false`).  CALC mode only: "
        "compute cycles and SRAM counts (finite-bandwidth totals are not compared here).  "
        "`minatar_n_m` is MinAtar's reference agent (conv 3x3 over Breakout's 4 channels, "
        "fc 1024->128, policy and value heads) with a ratio per layer, plus its conv over "
        "Freeway's 7 channels (K = 63, which no m divides); `gemm_n_m` has GEMMs with awkward "
        "extents, K < m, K mod m != 0 and n not dividing m.  Raw numbers: "
        "`experiments/results/scalesim_n_m_layers.csv`; SCALE-Sim's numbers for the test "
        "suite: `tests/data/scalesim_n_m_cycles.csv` (`tests/test_scalesim_n_m.py`, which "
        "does not need SCALE-Sim).  `a3cs simulate --workload <topology>.csv --hw <cfg>` "
        "reads the same files.",
        "",
        "**The rule.**  An n:m layer keeps n of every m consecutive weights along the "
        "reduction, at the same positions for every filter: SCALE-Sim tiles the pattern "
        "`[1]*n + [0]*(m-n)` along its im2col window index (channel innermost), from 0, cut at "
        "K.  Whole rows of the K x N weight matrix are zero and the array skips them (the "
        "matching ifmap columns are never fed), so the layer is the dense GEMM with K "
        "replaced by",
        "",
        "    K' = floor(K/m) * n + min(n, K mod m)",
        "",
        "in every dataflow (SCALE-Sim compresses both operands before the dataflow is "
        "chosen): ws `(2 Sr + Sc + M - 2) ceil(K'/Sr) ceil(N/Sc) - 1`, os `(Sr + Sc + K' - 2) "
        "ceil(M/Sr) ceil(N/Sc) - 1`, is `(2 Sr + Sc + N - 2) ceil(K'/Sr) ceil(M/Sc) - 1` "
        "(last busy cycle).  hw_sim's `n_m` engine (`hw_sim/engines/n_m.py`) runs exactly that;"
        " it also loads the index metadata (ceil(log2 m) bits per kept weight) with the first "
        "weights, which is DRAM traffic, not compute.",
        "",
        "| topology | array | dataflow | layers | compute cycles equal | hw_sim compute cycles "
        "| SCALE-Sim compute cycles | SRAM counts |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    cases: dict[tuple[str, str, str], list[NMRow]] = {}
    for r in rows:
        cases.setdefault((r.topology, r.array, r.dataflow), []).append(r)
    for (topology, array, dataflow), group in cases.items():
        explained = sum(r.ifmap_explained and r.filter_ofmap_equal for r in group)
        note = ("ifmap x m/n, rest equal" if dataflow == "ws" else "equal") \
            if explained == len(group) else f"**{len(group) - explained} differ**"
        lines.append(
            f"| {topology} | {array} | {dataflow} | {len(group)} | "
            f"{sum(r.compute_equal for r in group)}/{len(group)} | "
            f"{sum(r.hw_sim_compute_cycles for r in group):,} | "
            f"{sum(r.scalesim_compute_cycles for r in group):,} | {note} |")
    lines += [
        "",
        f"**{equal} of {len(rows)} N:M cases have identical compute cycles.**  SRAM counts: "
        f"filter reads and ofmap writes equal in {filter_ofmap} of {len(rows)} (os ofmap "
        f"writes up to the dense slip above); ifmap reads equal in {ifmap_same} of "
        f"{len(other)} os/is cases; in {ws_factor} of {len(ws)} ws cases SCALE-Sim's ifmap "
        "reads are hw_sim's times m/n (below).",
        "",
        "**SRAM counts.**  hw_sim counts the dense events with K' for K (ws: ifmap "
        "`M K' ceil(N/Sc)`, filter `K' N`, ofmap writes `M N ceil(K'/Sr)`; os and is "
        "likewise), the words the array is fed.  SCALE-Sim agrees in os and is, and for ws "
        "filter reads and ofmap writes.  Its ws ifmap count is `M K' ceil(N/Sc) x m/n`: "
        "`systolic_compute_ws.py` adds `rows x columns x (m/n)` per fold ('a single block of "
        "input is shared among M/N rows ... read M/N times'), a float summed fold by fold "
        "(fractional when n does not divide m, e.g. 186.67 for `g_frac_3of4`, 3:4, on 8x8).  "
        "That charges the reads of the whole dense window (about `M K "
        "ceil(N/Sc)`, the dense count), as if each kept weight's block of m inputs were read "
        "and the n matching ones selected; hw_sim deliberately keeps one read per input the "
        "array uses, the count SCALE-Sim itself gives in os and is.  The per-case table shows "
        "both ifmap numbers; the counts do not affect cycles.",
        "",
        "**What SCALE-Sim does that hw_sim deliberately does not.**",
        "",
        "* *Row-wise sparsity* (`OptimizedMapping = true`): SCALE-Sim 3.0.0 then ignores the "
        "topology's ratio for the mapping, draws each filter's N at random in [1, B/2] "
        "(`RandomNumberGeneratorSeed`), compresses K to `ceil(K/2B) B` whatever the ratio, "
        "leaves the ifmap uncompressed, and only ws runs (os and is fail an assertion).  That "
        "is not a format a network can be trained for: `load_scalesim_cfg` refuses it with a "
        "one-line `ConfigError` naming `sparsity.OptimizedMapping`.",
        "* *The dropped last cell*: SCALE-Sim drops each row's last cell (`row.split(',')"
        "[:-1]`), so `..., 1, 2:4` without a trailing comma runs dense.  hw_sim reads it the "
        "same way (both tools must read a file alike) and `write_topology_csv` always ends a "
        "row with a comma; a present ratio cell that is not `n:m` with 1 <= n <= m (`5:4`, "
        "`0:4`, `NPU,`) is a `ConfigError` naming `line N.Sparsity`, where SCALE-Sim 3.0.0 "
        "stops with an uncaught exception (5:4: ValueError `negative dimensions`; `NPU`: "
        "IndexError; 0:4 in ws: ValueError `need at least one array to concatenate`).",
        "* *Ratios with sparsity off*: with `SparsitySupport = false` SCALE-Sim ignores the "
        "ratios and runs dense; hw_sim refuses an N:M layer on hardware without `n_m` "
        "(`ConfigError` naming `n_m`) rather than silently ignore the layer's format.",
        "* *SPARSE_REPORT storage*: `SparseRep` (csr, csc, ellpack_block) changes only "
        "SCALE-Sim's storage report, which counts 32-bit metadata words and never moves them; "
        "hw_sim accepts the key, stores ceil(log2 m) index bits per kept weight in its own "
        "words and loads them from DRAM.",
        "",
        "<details open><summary>All N:M cases (hw_sim / SCALE-Sim; M, N, K: the GEMM; "
        "K': kept reduction)</summary>",
        "",
        "| topology | array | dataflow | layer | ratio | M | N | K | K' | hw_sim compute | "
        "SCALE-Sim compute | equal | hw_sim ifmap reads | SCALE-Sim ifmap reads | hw_sim "
        "filter reads / ofmap writes | SCALE-Sim filter reads / ofmap writes | SRAM counts |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.topology} | {r.array} | {r.dataflow} | {r.layer} | {r.ratio} | {r.gemm_m} "
            f"| {r.gemm_n} | {r.gemm_k} | {r.k_compressed} | {r.hw_sim_compute_cycles:,} | "
            f"{r.scalesim_compute_cycles:,} | {'yes' if r.compute_equal else '**no**'} | "
            f"{r.hw_sim_ifmap_sram_reads:,} | {_reads(r.scalesim_ifmap_sram_reads)} | "
            f"{r.hw_sim_filter_sram_reads:,} / {r.hw_sim_ofmap_sram_writes:,} | "
            f"{r.scalesim_filter_sram_reads:,} / {r.scalesim_ofmap_sram_writes:,} | "
            f"{_sram_note(r)} |")
    lines += ["", "</details>", "", N_M_END, ""]
    return "\n".join(lines)


def replace_n_m_section(document: str, section: str) -> str:
    """``document`` with its N:M section replaced by ``section`` (inserted before the
    per-layer results, or at the end, if it has none yet)."""
    begin, end = document.find(N_M_BEGIN), document.find(N_M_END)
    if begin >= 0 and end > begin:
        tail = document[end + len(N_M_END):].lstrip("\n")
        return document[:begin] + section + "\n" + tail
    anchor = document.find("\n## Per-layer results")
    if anchor < 0:
        return document.rstrip("\n") + "\n\n" + section
    return document[:anchor + 1] + section + "\n" + document[anchor + 1:]


# -------------------------------------------------------------------------------------------
# Outputs


def write_csv(path: Path, rows: Sequence[Any]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(asdict(rows[0])))
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in asdict(row).items()})
    atomic_write_text(path, buffer.getvalue())


REGRESSION_COLUMNS = ("topology", "form", "topology_row", "layer", "array_rows", "array_cols",
                      "sram_kb", "dataflow", "compute_cycles", "ifmap_sram_reads",
                      "filter_sram_reads", "ofmap_sram_writes")
#: The N:M file has the ratio after the layer, and ws ifmap reads as SCALE-Sim reports them
#: (possibly fractional).
N_M_REGRESSION_COLUMNS = (*REGRESSION_COLUMNS[:4], "ratio", *REGRESSION_COLUMNS[4:])


def write_regression_data(path: Path, rows: Sequence[LayerRow] | Sequence[NMRow],
                          topologies: dict[str, Path]) -> None:
    """SCALE-Sim's own numbers for the test suite (which cannot run SCALE-Sim): per layer,
    the topology row exactly as SCALE-Sim read it (the N:M rows: and the ratio), the array,
    and SCALE-Sim's compute cycles and SRAM counts."""
    n_m = bool(rows) and isinstance(rows[0], NMRow)
    rows_of = {name: topology_rows(file)[1] for name, file in topologies.items()}
    forms = {name: "gemm" if is_gemm_topology(file) else "conv"
             for name, file in topologies.items()}
    index: dict[tuple[str, str, str], int] = {}
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(N_M_REGRESSION_COLUMNS if n_m else REGRESSION_COLUMNS)
    for r in rows:
        i = index[(r.topology, r.array, r.dataflow)] = index.get(
            (r.topology, r.array, r.dataflow), -1) + 1
        array = ARRAYS[r.array]
        ratio = (r.ratio,) if isinstance(r, NMRow) else ()
        ifmap_reads = repr(r.scalesim_ifmap_sram_reads) if n_m else r.scalesim_ifmap_sram_reads
        writer.writerow((r.topology, forms[r.topology], rows_of[r.topology][i], r.layer,
                         *ratio, array.rows, array.cols, array.sram_kb, r.dataflow,
                         r.scalesim_compute_cycles, ifmap_reads,
                         r.scalesim_filter_sram_reads, r.scalesim_ofmap_sram_writes))
    atomic_write_text(path, buffer.getvalue())


def _fmt(value: float | None, spec: str = ",") -> str:
    return "n/a" if value is None else format(value, spec)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f} %"


MEMORY_MODELS = """\
## Why totals with a finite bandwidth differ: the two memory models

**hw_sim** (`hw_sim/schedule.py`): one DRAM channel of `B` words/cycle shared by all
operands.  A layer is a sequence of steps (chunks of folds, sized to half of each
double-buffered SRAM); while step *i* computes, the channel fetches step *i+1*'s inputs and
drains step *i-1*'s outputs, and step *i+1* starts when both are done:
`duration_i = max(compute_i, ceil((load_{i+1} + store_{i-1}) / B))`, plus a prologue
(first load) and an epilogue (last store).  Operands that fit their whole buffer are fetched
once per layer; everything else is re-fetched per fold.

**SCALE-Sim v3** (`scalesim/memory/`, read for this report): the compute side emits, cycle
by cycle, the SRAM addresses the array needs (demand matrices), and three independent
buffers serve them:

* **Bandwidth is per operand, and `Bandwidth` is not the read bandwidth.**  In USER mode
  `single_layer_sim.run` sets the ifmap and filter prefetch rates to the `[layout]` keys
  `IfmapSRAMBankBandwidth` and `FilterSRAMBankBandwidth`, and only the ofmap drain rate to
  `Bandwidth`.  `write_scalesim_cfg` writes `B` into all three, so SCALE-Sim moves up to
  3B words/cycle (three channels) where hw_sim shares one channel of B.
* **Prefetch is a fixed stream, not a reaction to consumption.**  `read_buffer` fetches the
  whole operand (in SCALE-Sim's prefetch order) in half-buffer chunks issued back to back
  from the previous chunk's completion time, whatever the array is doing.
* **Stalls are counted against the wrong chunk and doubled.**  On a miss, `service_reads`
  swaps in the prefetched half, issues the next prefetch and stalls until *that next*
  prefetch completes; the stall is added twice (`offset += potential_stall_cycles` then
  again under `if potential_stall_cycles > 0`), and a negative value (data early) moves the
  request earlier instead of being ignored.
* **The prefetch pointer does not advance.**  `new_prefetch` sets
  `next_line_prefetch_idx = num_lines % rows` instead of adding it to the start index, so
  after the first refill every prefetch re-reads the same lines of the fetch matrix: DRAM
  read counts and the DRAM trace are wrong whenever an operand is larger than its buffer.
* **Padding is fetched.**  The fetch stream is SCALE-Sim's prefetch matrix, including the
  null (-1) entries that pad partially filled folds, so every refill is a whole number of
  `B`-word lines whether or not they hold data, and the first refill is a whole active
  half even for a tiny operand.  DRAM read counts include the padding (e.g. 1,030 filter
  reads for the 384 weights of the MinAtar policy head on 8x8).
* **Residency is by 1/100th of the buffer.**  The buffer is a hash of sets of
  `ceil(size/100)` words; the active window advances by the prefetch half on each miss and
  wraps around.  A miss on an address just *behind* the window (a fold whose demand
  straddles the window edge in reverse order: ws filters and is inputs are fed in reverse
  row order) makes the window travel all the way round the operand, one refill at a time,
  each refill concatenating the growing DRAM trace (quadratic time).  Measured while
  writing this: the MinAtar fc layer (1024x128 weights) on 8x8 ws with 4 kB buffers did
  not finish in 10 minutes; after 952 refills, 480 misses had been one line behind the
  window.  Layers that hit the per-layer time limit show as `timeout` here.
* **The first prefetch happens before cycle 0.**  `Total Cycles` (COMPUTE_REPORT) excludes
  it; `Total Cycles (incl. prefetch)` is the span from the first ifmap/filter DRAM read to
  the last ofmap DRAM write.  hw_sim's `total_cycles` spans the same interval (prologue
  to epilogue), so the error column compares with the latter.
* **CALC mode** (no bandwidth) uses `read_buffer_estimate_bw`, which never stalls;
  the ofmap drains at `ArrayWidth` words/cycle.  Compute cycles are taken from CALC runs.

## SRAM counts

SCALE-Sim counts the SRAM words the array requests (DETAILED_ACCESS_REPORT.csv):
ifmap reads, filter reads, ofmap writes.  hw_sim counts the same events per fold:

* ws: ifmap reads `M K ceil(N/Sc)`, filter reads `K N`, ofmap writes `M N ceil(K/Sr)`;
* is: ifmap reads `K M`, filter reads `K N ceil(M/Sc)`, ofmap writes `M N ceil(K/Sr)`;
* os: ifmap reads `M K ceil(N/Sc)`, filter reads `K N ceil(M/Sr)`, ofmap writes `M N`.

They are equal in every case below except one documented SCALE-Sim slip: for os,
`systolic_compute_os.create_ofmap_demand_mat` adds `shape[0] + shape[1]` of each padded
fold (`Sr + Sc`) to `ofmap_writes`, so SCALE-Sim reports `M N + folds (Sr + Sc)`; the
"SRAM equal" column accepts exactly that difference.  hw_sim also counts partial-sum reads
(`ofmap_sram_reads`, ws/is folds after the first along K), which SCALE-Sim does not count.
DRAM word counts are not compared: SCALE-Sim's USER-mode counts are inflated by the prefetch
pointer bug and its CALC-mode counts are estimates.
"""


def markdown(layers: list[LayerRow], runs: list[RunRow], command: str, versions: dict[str, str],
             bandwidth: int | None, timeout_s: float, repeats: int,
             skipped_bandwidth: Sequence[str] = (), n_m: str = "") -> str:
    """The generated validation document (``skipped_bandwidth``: topologies whose USER-mode
    runs were skipped with ``--no-bandwidth-for``; ``n_m``: the N:M section, placed before
    the per-layer results)."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# hw_sim against SCALE-Sim v3",
        "",
        f"Generated by `{command}` on {now} ({platform.node()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}); SCALE-Sim {versions['scalesim']} with numpy "
        f"{versions['numpy']} in its own venv.  Do not edit: rerun the command.",
        "",
        "Both tools read the same files (`experiments/results/scalesim_inputs/`): SCALE-Sim's "
        "ResNet-18 topology as shipped, the other topologies written by "
        "`hw_sim.scalesim_files.write_topology_csv`, and `.cfg` files written by "
        "`write_scalesim_cfg` (SRAM per operand: 64 kB on 32x32, 16 kB on the small arrays). "
        "Cycle counts follow SCALE-Sim's convention (index of the last busy cycle).  Raw "
        "numbers: `experiments/results/scalesim_validation_layers.csv` and "
        "`scalesim_validation_runs.csv`.",
        "",
        "## Summary: compute cycles (CALC, no stalls) and SRAM counts",
        "",
        "| topology | array | dataflow | layers | compute cycles equal | hw_sim compute cycles "
        "| SCALE-Sim compute cycles | SRAM counts equal |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(f"| {r.topology} | {r.array} | {r.dataflow} | {r.layers} | "
                     f"{r.compute_equal_layers}/{r.layers} | {r.hw_sim_compute_cycles:,} | "
                     f"{r.scalesim_compute_cycles:,} | {r.sram_equal_layers}/{r.layers} |")
    equal = sum(r.compute_equal for r in layers)
    lines += ["", f"**{equal} of {len(layers)} layer cases have identical compute cycles; "
              f"{sum(r.sram_equal for r in layers)} of {len(layers)} identical SRAM counts "
              "(os ofmap writes up to SCALE-Sim's documented slip).**", ""]
    if bandwidth is not None:
        timeouts = sum(x.scalesim_bw_status == "timeout" for x in layers)
        skipped = (f"  Not run for {', '.join(skipped_bandwidth)} (`--no-bandwidth-for`): "
                   "SCALE-Sim's USER mode can take hours on one of its layers, for the "
                   "reasons below; those rows read `not run`." if skipped_bandwidth else "")
        lines += [
            f"## Total cycles with a finite bandwidth ({bandwidth} words/cycle)",
            "",
            f"USER-mode cfgs; SCALE-Sim runs one process per layer with a {timeout_s:g} s "
            f"limit (`--scalesim-timeout`); a layer that does not finish in time shows as "
            f"`timeout` in the per-layer tables and is left out of the error ({timeouts} did "
            "here).  Error = (hw_sim total - SCALE-Sim total incl. prefetch) / SCALE-Sim, over "
            "the layers SCALE-Sim finished." + skipped,
            "",
            "| topology | array | dataflow | layers finished | hw_sim total | SCALE-Sim total "
            "(incl. prefetch) | error | per-layer error min / median / max |",
            "|---|---|---|---:|---:|---:|---:|---|",
        ]
        for r in runs:
            errs = [x.total_error_pct for x in layers if (x.topology, x.array, x.dataflow)
                    == (r.topology, r.array, r.dataflow) and x.total_error_pct is not None]
            spread = (f"{min(errs):+.1f} / {statistics.median(errs):+.1f} / {max(errs):+.1f} %"
                      if errs else "n/a")
            if r.topology in skipped_bandwidth:
                lines.append(f"| {r.topology} | {r.array} | {r.dataflow} | not run | n/a | "
                             "n/a | n/a | n/a |")
                continue
            lines.append(f"| {r.topology} | {r.array} | {r.dataflow} | {r.bw_layers_ok}/"
                         f"{r.layers} | {_fmt(r.hw_sim_total_cycles_bw)} | "
                         f"{_fmt(r.scalesim_total_incl_prefetch_bw)} | {_pct(r.total_error_pct)}"
                         f" | {spread} |")
        lines.append("")
    lines += [
        "## Cost of each tool",
        "",
        "SCALE-Sim CALC: the whole topology in one process, wall time from start to exit.  "
        f"hw_sim: the same files in a fresh process, median wall time of {repeats} runs after a "
        "warm-up run (loading both files and simulating with the finite-bandwidth cfg, or the "
        "CALC one where USER runs were skipped).  Peak memory is each process's peak RSS.  "
        "SCALE-Sim USER: sum of the per-layer processes (timeouts included) and their largest "
        "peak RSS.  The machine was shared (see the header), so walls are noisy; the ratio of "
        "one case compares runs made at different times.",
        "",
        "| topology | array | dataflow | SCALE-Sim CALC wall | SCALE-Sim CALC peak | hw_sim wall "
        "| hw_sim peak | speed ratio | SCALE-Sim USER wall | SCALE-Sim USER peak |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(
            f"| {r.topology} | {r.array} | {r.dataflow} | {r.scalesim_calc_wall_s:,.1f} s | "
            f"{r.scalesim_calc_peak_rss_mb:,.0f} MB | {r.hw_sim_wall_s * 1e3:,.1f} ms | "
            f"{r.hw_sim_peak_rss_mb:,.0f} MB | "
            f"{r.scalesim_calc_wall_s / r.hw_sim_wall_s:,.0f}x | "
            f"{_fmt(r.scalesim_user_wall_s, ',.1f')} s | "
            f"{_fmt(r.scalesim_user_peak_rss_mb, ',.0f')} MB |")
    lines += ["", MEMORY_MODELS]
    if n_m:
        lines.append(n_m)
    lines += ["## Per-layer results", ""]
    for r in runs:
        rows = [x for x in layers if (x.topology, x.array, x.dataflow)
                == (r.topology, r.array, r.dataflow)]
        lines += [
            f"<details><summary>{r.topology}, {r.array}, {r.dataflow}: "
            f"{r.compute_equal_layers}/{r.layers} compute-cycle counts equal</summary>",
            "",
            "| layer | M | N | K | folds | hw_sim compute | SCALE-Sim compute | equal | SRAM "
            "equal | hw_sim total (bw) | SCALE-Sim total incl. prefetch (bw) | error |",
            "|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|",
        ]
        for x in rows:
            ss_total = (x.scalesim_bw_status if x.scalesim_total_incl_prefetch_bw is None
                        else f"{x.scalesim_total_incl_prefetch_bw:,}")
            lines.append(
                f"| {x.layer} | {x.gemm_m} | {x.gemm_n} | {x.gemm_k} | {x.folds} | "
                f"{x.hw_sim_compute_cycles:,} | {x.scalesim_compute_cycles:,} | "
                f"{'yes' if x.compute_equal else '**no**'} | "
                f"{'yes' if x.sram_equal else '**no**'} | {_fmt(x.hw_sim_total_cycles_bw)} | "
                f"{ss_total} | {_pct(x.total_error_pct)} |")
        lines += ["", "</details>", ""]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topologies", nargs="+", default=list(TOPOLOGIES), choices=TOPOLOGIES)
    parser.add_argument("--dataflows", nargs="+", default=list(DATAFLOWS), choices=DATAFLOWS)
    parser.add_argument("--arrays", nargs="+", default=list(ARRAYS), choices=list(ARRAYS),
                        help="arrays for every topology but resnet18")
    parser.add_argument("--resnet-arrays", nargs="+", default=["32x32"], choices=list(ARRAYS),
                        help="arrays for resnet18 (each takes SCALE-Sim minutes and GBs)")
    parser.add_argument("--bandwidth", type=int, default=10,
                        help="DRAM words/cycle of the USER-mode runs (SCALE-Sim's default 10)")
    parser.add_argument("--no-bandwidth", action="store_true",
                        help="skip the finite-bandwidth (USER) runs")
    parser.add_argument("--no-bandwidth-for", nargs="+", default=[], choices=TOPOLOGIES,
                        metavar="TOPOLOGY",
                        help="skip the finite-bandwidth (USER) runs of these topologies only "
                        "(SCALE-Sim's USER mode can take hours per ResNet-18 layer)")
    parser.add_argument("--scalesim-timeout", type=finite_float, default=600.0,
                        help="seconds per SCALE-Sim USER-mode layer run (default 600)")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV,
                        help=f"SCALE-Sim's virtual environment (created if missing; default "
                        f"{DEFAULT_VENV})")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="folder for the CSVs, the inputs and the SCALE-Sim cache")
    parser.add_argument("--doc", type=Path, default=DOC, help="generated markdown document")
    parser.add_argument("--repeats", type=int, default=5, help="hw_sim timing repeats")
    parser.add_argument("--regression-data", type=Path, metavar="CSV",
                        help="also write SCALE-Sim's per-layer numbers for the test suite "
                        "(tests/data/scalesim_compute_cycles.csv)")
    parser.add_argument("--n-m-topologies", nargs="*", default=list(N_M_TOPOLOGIES),
                        choices=N_M_TOPOLOGIES, metavar="TOPOLOGY",
                        help="N:M topologies (layer-wise sparsity, CALC) for the document's "
                        f"N:M section ({', '.join(N_M_TOPOLOGIES)}; none: no section)")
    parser.add_argument("--n-m-only", action="store_true",
                        help="run only the N:M cases and replace the N:M section of the "
                        "existing --doc in place (the dense tables and CSVs are left as they "
                        "are)")
    parser.add_argument("--n-m-regression-data", type=Path, metavar="CSV",
                        help="also write SCALE-Sim's per-layer numbers of the N:M cases for "
                        "the test suite (tests/data/scalesim_n_m_cycles.csv)")
    args = parser.parse_args(argv)
    if args.n_m_only and not args.n_m_topologies:
        raise ConfigError("--n-m-topologies", "none", "at least one with --n-m-only")
    if args.n_m_only:  # read back at the end, after the runs
        read_text(args.doc, field="--doc", expected="an existing document whose N:M section "
                  "--n-m-only replaces (run without --n-m-only first)")
    if args.n_m_only and args.regression_data is not None:
        raise ConfigError("--regression-data", str(args.regression_data),
                          "not with --n-m-only (it runs no dense case; use "
                          "--n-m-regression-data)")
    if args.bandwidth < 1:
        raise ConfigError("--bandwidth", args.bandwidth, "a positive integer (words/cycle)")
    if args.scalesim_timeout <= 0:
        raise ConfigError("--scalesim-timeout", args.scalesim_timeout, "seconds > 0")
    if args.repeats < 1:
        raise ConfigError("--repeats", args.repeats, "an integer >= 1")
    # The outputs are written after the runs (hours of SCALE-Sim): a path that cannot be
    # written fails now.
    check_output_path(args.results, field="--results", kind="directory")
    check_output_path(args.doc, field="--doc")
    for flag, path in (("--regression-data", args.regression_data),
                       ("--n-m-regression-data", args.n_m_regression_data)):
        if path is not None:
            check_output_path(path, field=flag)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        versions = ensure_scalesim_venv(args.venv.expanduser())
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    inputs = args.results / "scalesim_inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    cache = ScaleSimCache(args.results / "scalesim_cache", args.venv.expanduser() / "bin" /
                          "python", versions)
    bandwidth = None if args.no_bandwidth else args.bandwidth
    dense_names = [] if args.n_m_only else args.topologies
    cases = []
    topologies = {}
    for name in dense_names:
        path = topologies[name] = topology_file(name, inputs)
        n_layers = len(topology_rows(path)[1])
        case_bandwidth = None if name in args.no_bandwidth_for else bandwidth
        for array in args.resnet_arrays if name == "resnet18" else args.arrays:
            for dataflow in args.dataflows:
                cases.append((name, path, ARRAYS[array], dataflow, case_bandwidth, n_layers))
    n_m_topologies = {name: n_m_topology_file(name, inputs) for name in args.n_m_topologies}
    n_m_cases = [(name, path, ARRAYS[array], dataflow) for name, path in n_m_topologies.items()
                 for array in args.arrays for dataflow in args.dataflows]
    steps = sum(1 + (n if bw is not None else 0) for *_, bw, n in cases) + len(n_m_cases)
    layers: list[LayerRow] = []
    runs: list[RunRow] = []
    n_m_rows: list[NMRow] = []
    with tqdm(total=steps, unit="run", desc="SCALE-Sim runs (cached ones are instant)") as bar:
        for name, path, array, dataflow, case_bandwidth, _ in cases:
            case_layers, case_run = run_case(name, path, array, dataflow, case_bandwidth, cache,
                                             inputs, args.scalesim_timeout, args.repeats, bar)
            layers += case_layers
            runs.append(case_run)
        for name, path, array, dataflow in n_m_cases:
            n_m_rows += run_n_m_case(name, path, array, dataflow, cache, inputs, bar)
    args.results.mkdir(parents=True, exist_ok=True)
    if layers:
        write_csv(args.results / "scalesim_validation_layers.csv", layers)
        write_csv(args.results / "scalesim_validation_runs.csv", runs)
    if n_m_rows:
        write_csv(args.results / "scalesim_n_m_layers.csv", n_m_rows)
    if args.regression_data is not None:
        write_regression_data(args.regression_data, layers, topologies)
    if args.n_m_regression_data is not None and n_m_rows:
        write_regression_data(args.n_m_regression_data, n_m_rows, n_m_topologies)
    command = ("python experiments/validate_scalesim.py " + shlex.join(
        sys.argv[1:] if argv is None else list(argv))).strip()
    section = n_m_section(n_m_rows, command, versions, args.n_m_only) if n_m_rows else ""
    if args.n_m_only:
        atomic_write_text(args.doc, replace_n_m_section(args.doc.read_text(), section))
    else:
        atomic_write_text(args.doc, markdown(layers, runs, command, versions, bandwidth,
                                             args.scalesim_timeout, args.repeats,
                                             [t for t in args.no_bandwidth_for
                                              if t in args.topologies], section))
    unequal = [r for r in [*layers, *n_m_rows] if not r.compute_equal]
    if layers:
        print(f"{sum(r.compute_equal for r in layers)}/{len(layers)} dense layer cases with "
              "identical compute cycles")
    if n_m_rows:
        sram = sum(r.ifmap_explained and r.filter_ofmap_equal for r in n_m_rows)
        print(f"{sum(r.compute_equal for r in n_m_rows)}/{len(n_m_rows)} N:M layer cases with "
              f"identical compute cycles; SRAM counts as documented (ws ifmap x m/n) in "
              f"{sram}/{len(n_m_rows)}")
    print(f"tables in {args.doc}")
    for r in unequal:
        print(f"  differs: {r.topology} {r.array} {r.dataflow} {r.layer}: hw_sim "
              f"{r.hw_sim_compute_cycles} SCALE-Sim {r.scalesim_compute_cycles}")
    return 0 if not unequal else 1

if __name__ == "__main__":
    sys.exit(main())
