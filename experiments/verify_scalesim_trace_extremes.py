"""Check that SCALE-Sim with its read buffers keeping only their trace's extremes
(``--read-buffer-trace extremes``, :mod:`hw_sim.scalesim_child`) reports what SCALE-Sim as
shipped reports, field by field, on every layer case the shipped tool has finished.

    python experiments/verify_scalesim_trace_extremes.py --venv /work/scalesim-venv \\
        --topologies resnet18 --arrays 32x32:64 --bandwidths 10

For each layer case of the grid whose shipped (``full``) run is in the cache, SCALE-Sim runs
again with ``extremes`` and every figure of its COMPUTE_REPORT and DETAILED_ACCESS_REPORT is
compared with the cached one; layers of one shape are run once.  Prints one line per case and
a total; ``--csv`` keeps the per-layer comparison.  Exit status 1 if any figure differs.
"""

from __future__ import annotations

import csv
import io
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

from a3cs_common.cli import OneLineParser, int_at_least, positive_float, script_main
from a3cs_common.errors import ConfigError
from a3cs_common.io import atomic_write_text, check_output_path
from hw_sim.scalesim_reference import (
    DEFAULT_VENV,
    SEED_CACHE,
    TOPOLOGIES,
    Case,
    cached_records,
    layer_inputs,
    parse_array,
    run_scalesim,
    scalesim_versions,
    trace_kind,
)


def shipped_records(caches: list[Path], key: str) -> dict | None:
    """The cached finished run of SCALE-Sim as shipped for ``key``, if any."""
    return next((record for record in cached_records(key, caches) if record["status"] == "ok"
                 and trace_kind(record) == "full"), None)


@script_main
def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--cache", type=Path, action="append",
                        help="caches of shipped runs (default: the committed one)")
    parser.add_argument("--topologies", nargs="+", choices=sorted(TOPOLOGIES),
                        default=["minatar_reference", "mlp_policy", "gemm_folds", "resnet18"])
    parser.add_argument("--arrays", nargs="+", type=parse_array,
                        default=[(32, 32, 64), (8, 8, 16), (16, 8, 16), (16, 16, 16),
                                 (16, 16, 8)], help="ROWSxCOLS:KB per operand buffer")
    parser.add_argument("--dataflows", nargs="+", default=["ws", "os", "is"],
                        choices=("ws", "os", "is"))
    parser.add_argument("--bandwidths", nargs="+", type=int_at_least(1), default=[10, 4, 2])
    parser.add_argument("--timeout", type=positive_float, default=3600.0,
                        help="seconds per layer")
    parser.add_argument("--csv", type=Path, help="per-layer comparison")
    args = parser.parse_args(argv)
    for rows, cols, kb in args.arrays:  # parse_array takes any integers
        if min(rows, cols, kb) < 1:
            raise ConfigError("--arrays", f"{rows}x{cols}:{kb}", "ROWSxCOLS:KB, each an "
                              "integer >= 1")
    caches = args.cache or [SEED_CACHE]
    for cache in caches:
        if not cache.is_dir():
            raise ConfigError("--cache", str(cache), "a folder of cached SCALE-Sim runs")
    if args.csv:  # written after the runs
        check_output_path(args.csv, field="--csv")
    versions = scalesim_versions(args.venv)
    python = args.venv / "bin" / "python"
    grid = [(topology, Case(rows, cols, kb, dataflow, bandwidth))
            for topology in args.topologies for rows, cols, kb in args.arrays
            for dataflow in args.dataflows for bandwidth in args.bandwidths]
    rows_out: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="scalesim_extremes_") as tmp:
        for topology, case in tqdm(grid, desc="cases", unit="case"):
            cfg, gemm, inputs = layer_inputs(topology, TOPOLOGIES[topology], case, Path(tmp),
                                             versions)
            checked: set[str] = set()
            case_rows: list[dict] = []
            for layer in inputs:
                shipped = shipped_records(caches, layer.key)
                if shipped is None or layer.key in checked:
                    continue
                checked.add(layer.key)
                mine = run_scalesim(python, cfg, layer.path, gemm, args.timeout, "extremes")
                ours = mine["layers"][0] if mine["status"] == "ok" else {}
                theirs = shipped["layers"][0]
                differing = sorted(k for k in theirs if k != "LayerID"
                                   and ours.get(k) != theirs[k])
                case_rows.append({
                    "topology": topology, "case": case.name, "layer": layer.row.split(",")[0],
                    "status": mine["status"], "fields": len(theirs) - 1,
                    "differing": " ".join(differing), "shipped_s": round(shipped["wall_s"], 2),
                    "extremes_s": round(mine["wall_s"], 2)})
            rows_out += case_rows
            tqdm.write(f"{topology:18s} {case.name:24s} {len(case_rows):3d} layer runs "
                       f"compared, {sum(bool(r['differing']) for r in case_rows)} differ")
    differ = [r for r in rows_out if r["differing"] or r["status"] != "ok"]
    shipped_s = sum(r["shipped_s"] for r in rows_out)
    extremes_s = sum(r["extremes_s"] for r in rows_out)
    print(f"{len(rows_out)} layer runs compared, {sum(r['fields'] for r in rows_out)} figures: "
          f"{len(differ)} runs differ; SCALE-Sim as shipped {shipped_s:,.1f} s, with extremes "
          f"{extremes_s:,.1f} s")
    for r in differ:
        print(f"  {r['topology']} {r['layer']} on {r['case']}: {r['status']} {r['differing']}")
    if args.csv and rows_out:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows_out[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows_out)
        atomic_write_text(args.csv, buffer.getvalue())
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
