"""``a3cs estimate``: the analytical model's estimate of a workload on a hardware
configuration, in the same table and JSON as ``a3cs simulate``."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "estimate",
        help="estimate a workload on an accelerator with the fast analytical model "
        "(same table/JSON as simulate)",
        description="Estimate a workload on an accelerator with accelerator_model's batched "
        "analytical model and print the same per-layer table and summary (or JSON) as "
        "`a3cs simulate`, so the two can be compared field by field.",
    )
    parser.add_argument("--hw", required=True, metavar="HW.yaml",
                        help="hardware description (YAML/JSON, or a SCALE-Sim .cfg)")
    parser.add_argument("--workload", required=True, metavar="NET.yaml",
                        help="workload (YAML/JSON, a SCALE-Sim topology .csv, or a trained "
                        "agent's checkpoint .pt)")
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="output format (default: table)")
    parser.add_argument("--resources", action="store_true",
                        help="also print the configuration's resources (FPGA DSP/BRAM18, ASIC "
                        "PEs, SRAM, area) and whether they fit the hardware's budget")
    parser.add_argument("--out", metavar="FILE",
                        help="also write the report (in --format) to this file, atomically")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    from accelerator_model.model import estimate
    from accelerator_model.resources import budget_fit, hardware_resources
    from hw_sim.hardware import load_hardware
    from hw_sim.io import atomic_write_text
    from hw_sim.workload import load_workload

    hw = load_hardware(args.hw)
    if str(args.workload).endswith(".pt"):
        from a3cs.rl.checkpoint import load_agent

        workload = load_agent(args.workload, field="--workload").model.workload(batch=1)
    else:
        workload = load_workload(args.workload)
    report = estimate(workload, hw)
    if args.format == "json":
        data = report.to_dict()
        if args.resources:
            data["resources"] = hardware_resources(hw)
            data["within_budget"] = budget_fit(hw)
        text = json.dumps(data, indent=2)
    else:
        text = report.to_table()
        if args.resources:
            resources = hardware_resources(hw)
            fit = budget_fit(hw)
            text += ("\n  resources         " + ", ".join(f"{k} {v:,.4g}"
                                                         for k, v in resources.items())
                     + ("" if fit is None else f"  ({'within' if fit else 'OVER'} budget)"))
    print(text)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    return 0
