"""Wall time of a run's stages over every session of a resumed run.

A stage interrupted (even by ``kill -9``) and continued with ``--resume`` took the time of all
its sessions; timing only the last one understates it (a retrain resumed near its end would
read as a few minutes).  The clock writes the running stage's seconds so far to
``stage_time.json`` every ``interval_s`` from a background thread, so a session that ends
without warning loses at most that much of its count; the next session starts from it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from a3cs_common.io import atomic_write_text

#: Seconds between saves of the running stage's time.
SAVE_INTERVAL_S = 30.0


class StageClock:
    """Times one stage at a time, carrying each stage's seconds across sessions.

    Use::

        clock = StageClock(out / "stage_time.json")
        with clock.timing("retrain"):
            ...
        seconds = clock.seconds("retrain")  # this session's and every earlier one's

    A missing or unreadable file starts every count at 0: only wall-time figures depend on
    it, so it never stops a run.
    """

    def __init__(self, path: Path, interval_s: float = SAVE_INTERVAL_S):
        self.path = path
        self.interval_s = interval_s
        self._seconds = self._read()
        self._lock = threading.Lock()

    def _read(self) -> dict[str, float]:
        try:
            saved = json.loads(self.path.read_text())
            return {str(k): float(v) for k, v in saved.items()
                    if isinstance(v, (int, float)) and v >= 0}
        except (OSError, ValueError, AttributeError):
            return {}

    def _save(self) -> None:
        with self._lock:
            atomic_write_text(self.path, json.dumps(self._seconds, indent=1) + "\n")

    def seconds(self, stage: str) -> float:
        """Seconds ``stage`` has run over every session (0.0 if it never ran)."""
        return self._seconds.get(stage, 0.0)

    @contextmanager
    def timing(self, stage: str) -> Iterator[None]:
        """Add the time spent inside the ``with`` block to ``stage``, saving it every
        ``interval_s`` while the block runs and once when it ends."""
        carried, started = self.seconds(stage), time.perf_counter()
        stop = threading.Event()

        def record() -> None:
            with self._lock:
                self._seconds[stage] = carried + time.perf_counter() - started

        def heartbeat() -> None:
            while not stop.wait(self.interval_s):
                record()
                self._save()

        thread = threading.Thread(target=heartbeat, name=f"clock-{stage}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            record()
            self._save()
