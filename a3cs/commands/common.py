"""Arguments and loading shared by the commands that take a workload (``a3cs simulate``,
``a3cs estimate``, ``a3cs accel-search``)."""

from __future__ import annotations

import argparse
from typing import Any


def add_workload(parser: argparse.ArgumentParser) -> None:
    """``--workload NET.yaml`` (required; read with :func:`load_cli_workload`)."""
    parser.add_argument("--workload", required=True, metavar="NET.yaml",
                        help="workload (YAML/JSON, a SCALE-Sim topology .csv, or a trained "
                        "agent's checkpoint .pt)")


def add_hw_and_workload(parser: argparse.ArgumentParser) -> None:
    """``--hw HW.yaml`` and ``--workload NET.yaml`` (both required)."""
    parser.add_argument("--hw", required=True, metavar="HW.yaml",
                        help="hardware description (YAML/JSON, or a SCALE-Sim .cfg)")
    add_workload(parser)


def add_report_output(parser: argparse.ArgumentParser) -> None:
    """``--format table|json`` and ``--out FILE``."""
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="output format (default: table)")
    parser.add_argument("--out", metavar="FILE",
                        help="also write the report (in --format) to this file, atomically")


def check_report_output(args: argparse.Namespace) -> None:
    """``--out`` (when given) is a file path that can be written, checked before any work.

    Raises:
        ConfigError: it is a directory, or under a file, or in a folder that cannot be written.
    """
    from a3cs_common.io import check_output_path

    if args.out:
        check_output_path(args.out, field="--out")


def load_cli_workload(path: str) -> Any:
    """The workload of ``--workload``: a workload file, or a trained agent's checkpoint
    (``.pt``: its network's workload at batch 1).

    Raises:
        ConfigError: the file cannot be read or is not a valid workload / checkpoint.
    """
    if str(path).endswith(".pt"):
        from a3cs.rl.checkpoint import load_agent

        return load_agent(path, field="--workload").model.workload(batch=1)
    from hw_sim.files import load_workload

    return load_workload(path)
