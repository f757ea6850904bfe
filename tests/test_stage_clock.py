"""A run's stage wall times over every session (a3cs.search.stage_clock)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from a3cs.search.stage_clock import StageClock


def test_a_stage_adds_its_time_to_the_earlier_sessions(tmp_path):
    path = tmp_path / "stage_time.json"
    first = StageClock(path, interval_s=60.0)
    with first.timing("retrain"):
        time.sleep(0.05)
    after_first = first.seconds("retrain")
    assert after_first >= 0.05
    assert json.loads(path.read_text()) == {"retrain": after_first}
    second = StageClock(path, interval_s=60.0)  # the next session of the run
    with second.timing("retrain"):
        time.sleep(0.05)
    assert second.seconds("retrain") >= after_first + 0.05
    assert second.seconds("search") == 0.0


def test_time_before_a_kill_9_is_kept(tmp_path):
    """The heartbeat saves the running stage, so a session killed without warning still
    counts (up to one interval less than) the time it ran."""
    path = tmp_path / "stage_time.json"
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from a3cs.search.stage_clock import StageClock\n"
        "with StageClock(Path(sys.argv[1]), interval_s=0.05).timing('search'):\n"
        "    time.sleep(60)\n"), str(path)])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if path.is_file() and json.loads(path.read_text() or "{}").get("search", 0) > 0.3:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the clock never saved the running stage")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    resumed = StageClock(path, interval_s=60.0)
    killed_at = resumed.seconds("search")
    assert killed_at > 0.3
    with resumed.timing("search"):
        time.sleep(0.05)
    assert resumed.seconds("search") >= killed_at + 0.05


@pytest.mark.parametrize("content", [b"\x00\xff garbage", b"[1, 2]", b'{"search": -4}'])
def test_an_unreadable_file_restarts_the_count(tmp_path, content):
    path = tmp_path / "stage_time.json"
    path.write_bytes(content)
    clock = StageClock(path)
    assert clock.seconds("search") == 0.0
    with clock.timing("search"):
        pass
    assert set(json.loads(path.read_text())) == {"search"}
