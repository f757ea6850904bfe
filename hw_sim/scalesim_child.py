"""Run SCALE-Sim 3.0.0 on one topology file: the script :mod:`hw_sim.scalesim_reference` runs
with the Python of SCALE-Sim's own venv, so it imports nothing from this project.

    python scalesim_child.py CFG TOPOLOGY LAYOUT OUT_DIR conv|gemm full|extremes

``full`` runs SCALE-Sim as shipped.  ``extremes`` changes one thing, how a read buffer holds its
DRAM trace: SCALE-Sim's ``read_buffer.new_prefetch`` appends each prefetch's rows to
``trace_matrix`` with ``np.concatenate``, copying the whole trace every prefetch, so time grows
with the square of the prefetch count and memory with the trace.  ResNet-18's Conv5_1b (WS,
32x32, 64 kB, 10 words/cycle) prefetches its filter 52,444 times: a 171.9 M-row float64 trace
(15.1 GB, 30 GB while the last copy is made) and about 4e14 bytes copied, which no 24 GB machine
finishes.  With traces off (``save_disk_space=True``, the only way this script runs SCALE-Sim),
the trace's one reader is ``get_external_access_start_stop_cycles``: the min and max of its
cycle column.  ``extremes`` keeps just the rows holding those two, so every report figure is the
one the shipped code gives (checked layer by layer against shipped runs:
``experiments/verify_scalesim_trace_extremes.py``).
"""

from __future__ import annotations

import sys

import numpy as np

READ_BUFFER_TRACES = ("full", "extremes")


class ReadBufferTraceExtremes:
    """A data descriptor standing in for ``read_buffer.trace_matrix``: it stores the rows that
    hold the smallest and largest cycle (column 0) of everything assigned to it.

    Assignments made while ``_appending`` is set (inside ``new_prefetch``) extend the trace, as
    SCALE-Sim's ``concatenate((trace_matrix, new_rows))`` does: reads there return zero rows of
    the trace's width and dtype, so the concatenation yields the new rows alone.  Any other
    assignment replaces the trace, as in SCALE-Sim.
    """

    def __get__(self, buffer, owner=None):
        if buffer is None:
            return self
        trace = buffer.__dict__["_trace_extremes"]
        return trace[:0] if buffer.__dict__.get("_appending") else trace

    def __set__(self, buffer, rows) -> None:
        rows = np.asarray(rows)
        if buffer.__dict__.get("_appending"):
            rows = np.concatenate((buffer.__dict__["_trace_extremes"], rows), axis=0)
        if rows.shape[0] > 2:
            cycles = rows[:, 0]
            rows = rows[[int(np.argmin(cycles)), int(np.argmax(cycles))]]
        buffer.__dict__["_trace_extremes"] = rows


def keep_read_buffer_trace_extremes(read_buffer_class: type) -> None:
    """Make ``read_buffer_class`` (SCALE-Sim's ``read_buffer``) hold only its trace's extremes."""
    new_prefetch = read_buffer_class.new_prefetch

    def appending_new_prefetch(self):
        self.__dict__["_appending"] = True
        try:
            new_prefetch(self)
        finally:
            self.__dict__["_appending"] = False

    read_buffer_class.new_prefetch = appending_new_prefetch
    read_buffer_class.trace_matrix = ReadBufferTraceExtremes()


def main(argv: list[str]) -> None:
    config, topology, layout, out, form, trace = argv
    if trace not in READ_BUFFER_TRACES:
        raise SystemExit(f"read buffer trace: got {trace!r}; allowed: {READ_BUFFER_TRACES}")
    if trace == "extremes":
        from scalesim.memory import read_buffer

        keep_read_buffer_trace_extremes(read_buffer.read_buffer)
    from scalesim.scale_sim import scalesim

    # save_disk_space=True: no trace files, which is what makes "extremes" exact.
    sim = scalesim(save_disk_space=True, verbose=False, config=config, topology=topology,
                   layout=layout, input_type_gemm=form == "gemm")
    sim.run_scale(top_path=out)


if __name__ == "__main__":
    main(sys.argv[1:])
