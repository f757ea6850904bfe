"""SCALE-Sim's recorded numbers (tests/data/scalesim_*.csv), grouped into the runs they came
from, for the regression tests that cannot run SCALE-Sim."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

#: (topology, form, array rows, array cols, sram kB, dataflow): one SCALE-Sim run.
CaseKey = tuple[str, str, int, int, int, str]


def read_cases(path: Path) -> dict[CaseKey, list[dict[str, str]]]:
    """The rows of ``path`` per SCALE-Sim run, in file order."""
    cases: dict[CaseKey, list[dict[str, str]]] = defaultdict(list)
    with path.open() as handle:
        for row in csv.DictReader(handle):
            key = (row["topology"], row["form"], int(row["array_rows"]), int(row["array_cols"]),
                   int(row["sram_kb"]), row["dataflow"])
            cases[key].append(row)
    return dict(cases)


def read_user_cases(path: Path) -> list[dict[str, str]]:
    """The rows of tests/data/scalesim_user_cycles.csv: one SCALE-Sim USER-bandwidth layer run
    each (``python -m hw_sim.scalesim_reference --regression-data``)."""
    with path.open() as handle:
        return list(csv.DictReader(handle))
