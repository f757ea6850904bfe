"""``a3cs estimate``: the analytical model's estimate of a workload on a hardware
configuration, in the same table and JSON as ``a3cs simulate``."""

from __future__ import annotations

import argparse

from a3cs.commands.common import (
    add_hw_and_workload,
    add_report_output,
    check_report_output,
    load_cli_workload,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "estimate",
        help="estimate a workload on an accelerator with the fast analytical model "
        "(same table/JSON as simulate)",
        description="Estimate a workload on an accelerator with accelerator_model's batched "
        "analytical model and print the same per-layer table and summary (or JSON) as "
        "`a3cs simulate`, so the two can be compared field by field.",
    )
    add_hw_and_workload(parser)
    parser.add_argument("--resources", action="store_true",
                        help="also print the configuration's resources (FPGA DSP/BRAM18, ASIC "
                        "PEs, SRAM, area) and whether they fit the hardware's budget")
    add_report_output(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    from a3cs_common.io import atomic_write_text
    from accelerator_model.model import estimate
    from accelerator_model.resources import budget_fit, hardware_resources
    from hw_sim.files import load_hardware

    check_report_output(args)
    hw = load_hardware(args.hw)
    workload = load_cli_workload(args.workload)
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
