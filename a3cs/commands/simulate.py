"""``a3cs simulate``: cycle-level simulation of a workload on a hardware configuration."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from a3cs.commands.common import (
    add_hw_and_workload,
    add_report_output,
    check_report_output,
    load_cli_workload,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="simulate a workload on an accelerator (per-layer cycles, stalls, traffic, energy)",
        description="Simulate a workload on an accelerator with hw_sim and print a per-layer "
        "table and a summary (or JSON).",
    )
    add_hw_and_workload(parser)
    parser.add_argument("--engine", choices=("event", "stepper"), default="event",
                        help="event: fast, whole steps at a time (default); stepper: the "
                        "per-cycle reference (small layers only)")
    parser.add_argument("--memory-model", choices=("default", "scalesim"),
                        help="how DRAM transfers stall the array, overriding the hardware's "
                        "memory_model: default (hw_sim's double-buffered prefetch) or scalesim "
                        "(SCALE-Sim 3.0.0's USER-bandwidth memory system, its totals and stalls "
                        "reproduced on dense layers)")
    parser.add_argument("--resources", action="store_true",
                        help="also print the FPGA resources (DSP slices, 18 Kb block RAMs) "
                        "hw_sim computes from its engine registry, and the FPGA budget fit")
    parser.add_argument("--trace-layer", metavar="NAME",
                        help="write a cycle trace of this layer (needs --trace)")
    parser.add_argument("--trace", metavar="FILE.csv", help="where the cycle trace goes")
    add_report_output(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from a3cs_common.errors import ConfigError
    from a3cs_common.io import atomic_write_text, check_output_path
    from hw_sim.files import load_hardware
    from hw_sim.hardware import MEMORY_MODELS
    from hw_sim.simulate import simulate, write_trace

    if (args.trace_layer is None) != (args.trace is None):
        given = "--trace-layer" if args.trace is None else "--trace"
        missing = "--trace" if args.trace is None else "--trace-layer"
        raise ConfigError(given, args.trace_layer or args.trace, f"only together with {missing}")
    check_report_output(args)
    if args.trace is not None:
        check_output_path(args.trace, field="--trace")
    hw = load_hardware(args.hw, memory_model=args.memory_model)
    if args.trace is not None and hw.memory_model == "scalesim" \
            and hw.dram.bandwidth_words_per_cycle is not None:
        raise ConfigError("--trace", args.trace, "no trace with memory model 'scalesim' (cycle "
                          "traces come from the stepper, which models hw_sim's own memory)")
    if args.engine != "event" and hw.memory_model == "scalesim" \
            and hw.dram.bandwidth_words_per_cycle is not None:
        raise ConfigError("--engine", args.engine, "event with memory model 'scalesim'")
    workload = load_cli_workload(args.workload)
    if str(args.hw).lower().endswith(".cfg") and hw.dram.bandwidth_words_per_cycle is not None:
        # A USER-bandwidth .cfg invites comparison with SCALE-Sim's own totals, which only the
        # scalesim model reproduces; say which one this run uses (stderr keeps JSON clean).
        other = "default" if hw.memory_model == "scalesim" else "scalesim"
        print(f"memory model: {hw.memory_model} ({MEMORY_MODELS[hw.memory_model]}); "
              f"--memory-model {other} for the other", file=sys.stderr)
    if args.trace_layer is not None:
        report = write_trace(workload, hw, args.trace_layer, args.trace, engine=args.engine)
    else:
        report = simulate(workload, hw, engine=args.engine)
    if args.format == "json":
        data = report.to_dict()
        if args.resources:
            data["resources"] = _resources(hw)
            data["within_fpga_budget"] = _fpga_fit(hw, data["resources"])
        text = json.dumps(data, indent=2)
    else:
        text = report.to_table()
        if args.resources:
            res = _resources(hw)
            fit = _fpga_fit(hw, res)
            text += (f"\n  FPGA resources    DSP {res['dsp']:,.0f}, BRAM18 {res['bram18k']:,.0f}, "
                     f"multipliers {res['multipliers']:,.0f}"
                     + ("" if fit is None else f"  ({'within' if fit else 'OVER'} budget)"))
    print(text)
    if args.trace is not None:
        print(f"cycle trace of {args.trace_layer}: {args.trace}")
    if args.out:
        atomic_write_text(args.out, text + "\n")
    return 0


def _resources(hw: Any) -> dict[str, Any]:
    from hw_sim.resources import fpga_resources

    res = fpga_resources(hw)
    return {"dsp": res.dsp, "bram18k": res.bram18k, "multipliers": res.multipliers,
            "banks": dict(res.banks)}


def _fpga_fit(hw: Any, res: dict[str, Any]) -> bool | None:
    """Whether the FPGA resources fit ``budget.fpga`` (``None`` without one)."""
    budget = hw.budget.fpga if hw.budget is not None else None
    if budget is None:
        return None
    return res["dsp"] <= budget.dsp and res["bram18k"] <= budget.bram18k
