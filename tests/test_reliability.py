"""Nothing loaded that can run code, nothing lost when a write fails, one bad run does not
break its neighbours."""

from __future__ import annotations

import errno
import json
import os
import pickle
import random
from pathlib import Path

import pytest
import torch

from a3cs.cli import main
from a3cs.plotting import collect_runs
from a3cs.rl.checkpoint import read_checkpoint, run_key_path, save_checkpoint
from a3cs.rl.config import TrainConfig
from a3cs.rl.train import train
from a3cs_common.errors import ConfigError
from a3cs_common.io import atomic_write_bytes, remove_stale_temporaries

REPO = Path(__file__).resolve().parents[1]
SMALL = {"env_id": "CartPole-v1", "num_envs": 2, "n_steps": 16, "batch_size": 32,
         "n_epochs": 1, "total_steps": 4 * 32, "checkpoint_every": 1}


class _Planted:
    """Unpickling this writes a file: the proof that a pickle ran code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (Path(self.marker), "code ran"))


def _run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    train(TrainConfig.model_validate(SMALL), run, progress=False, stop_after_updates=2)
    return run


def test_resume_refuses_environment_state_it_did_not_sign(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    run = _run(tmp_path)
    checkpoint = run / "checkpoint.pt"
    marker = tmp_path / "pwned"
    saved = read_checkpoint(checkpoint)
    assert len(saved["envs_hmac"]) == 64
    saved["envs"] = pickle.dumps(_Planted(str(marker)))  # a colleague's "run", say
    save_checkpoint(checkpoint, {k: v for k, v in saved.items() if k != "format"})
    assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--resume" in err and "not signed by your key" in err
    assert not marker.exists()  # nothing was unpickled
    saved.pop("envs_hmac")  # unsigned, as runs written before signing were
    save_checkpoint(checkpoint, {k: v for k, v in saved.items() if k != "format"})
    assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 2
    assert "--trust-run" in capsys.readouterr().err
    assert not marker.exists()


def test_a_run_signed_by_another_key_is_refused_and_trust_run_resumes_ones_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path)
    monkeypatch.setenv("A3CS_RUN_KEY_FILE", str(tmp_path / "other_user_key"))
    assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 2
    assert "not signed by your key" in capsys.readouterr().err
    assert run_key_path().stat().st_mode & 0o777 == 0o600
    assert main(["train", "--out", str(run), "--resume", "--trust-run", "--no-progress"]) == 0
    assert read_checkpoint(run / "checkpoint.pt")["update"] == 4
    assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 0  # now signed
    assert main(["train", "--out", str(run), "--trust-run"]) == 2
    assert "--trust-run" in capsys.readouterr().err


def test_a_failed_write_keeps_the_previous_file_and_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "checkpoint.pt"
    atomic_write_bytes(target, b"previous")

    def disk_full(fd: int) -> None:  # the data did not reach the disk
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_bytes(target, b"new" * 100_000)
    monkeypatch.undo()
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_disk_full_during_training_ends_in_one_line_and_the_run_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path)
    real_replace = os.replace

    def full(src: str, dst: str) -> None:
        if str(dst).endswith("checkpoint.pt"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full)
    assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "--resume" in err
    monkeypatch.undo()
    assert read_checkpoint(run / "checkpoint.pt")["update"] == 2  # the previous one, intact
    assert not list(run.glob(".*.tmp"))
    assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 0
    assert read_checkpoint(run / "checkpoint.pt")["update"] == 4


def test_temporaries_of_a_killed_write_are_removed_when_the_run_resumes(tmp_path: Path) -> None:
    run = _run(tmp_path)
    stale = run / ".checkpoint.pt.k1ll3d.tmp"  # what kill -9 mid-write leaves
    stale.write_bytes(b"\0" * 1000)
    train(TrainConfig.model_validate(SMALL), run, resume=True, progress=False)
    assert not stale.exists()
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_one_damaged_neighbour_is_skipped_when_asked_and_named_otherwise(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = REPO / "experiments/results/cosearch_breakout"
    bad = tmp_path / "damaged"
    bad.mkdir()
    (bad / "results.json").write_text(json.dumps([{"method": "a3cs"}]))
    with pytest.raises(ConfigError, match="damaged"):
        collect_runs([good, bad])
    skipped: list[ConfigError] = []
    rows = collect_runs([good, bad], on_bad=skipped.append)
    assert rows and len(skipped) == 1
    out = tmp_path / "plot"
    assert main(["plot", str(good), str(bad), "--out", str(out), "--skip-bad"]) == 0
    assert "warning: skipped" in capsys.readouterr().err
    assert out.with_suffix(".png").is_file()


def test_torch_files_that_hold_code_are_not_loaded(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "agent.pt"
    torch.save({"format": "a3cs-agent/1", "config": _Planted(str(marker))}, path)
    assert main(["evaluate", str(path)]) == 2
    assert "CHECKPOINT" in capsys.readouterr().err
    assert not marker.exists()


def test_random_bytes_as_a_checkpoint_are_one_line_and_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Random bytes, bare or behind a pickle or zip header, make torch's safe unpickler
    raise IndexError, KeyError, UnicodeDecodeError... and warn first: every one is the same
    one-line error."""
    rng = random.Random(0)
    prefixes = (b"", b"\x80\x02", b"\x80\x04\x95", b"PK\x03\x04",
                b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.")
    for index in range(400):
        path = tmp_path / f"random_{index}.pt"
        path.write_bytes(rng.choice(prefixes) + rng.randbytes(rng.randint(0, 400)))
        with pytest.raises(ConfigError, match="not a torch file"):
            read_checkpoint(path)
    assert main(["evaluate", str(tmp_path / "random_0.pt")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "CHECKPOINT" in err


def test_a_damaged_sibling_run_does_not_break_a_new_runs_plot(tmp_path: Path) -> None:
    """A search plots itself beside the runs in the same folder at its end: a damaged
    neighbour is left out instead of failing the new run's last stage on every --resume."""
    from a3cs.search.run import _reference_rows

    good = tmp_path / "good"
    good.mkdir()
    (good / "results.json").write_text(
        (REPO / "experiments/results/cosearch_breakout/a3cs_s0/results.json").read_text())
    for name, content in (("garbage", b"\xff\xfe\x00"), ("dict", b'{"fps": 1}'),
                          ("nan", b'[{"fps": NaN}]')):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_bytes(content)
    new = tmp_path / "new"
    new.mkdir()
    rows = _reference_rows(new)
    assert len(rows) == 1 and rows[0].method == "a3cs"


@pytest.mark.parametrize("content", [b"\x8b\x00garbage\xff", b'[{"trial": 0', b'{"trial": 0}',
                                     b"[1, 2]", b'[{"trial": 0}]'])
def test_a_damaged_trials_or_finalists_file_is_one_line_on_resume(tmp_path: Path,
                                                                   content: bytes) -> None:
    """A killed search resumes from the trials and finalists it recorded; when one of those
    files was damaged since, the resume names it instead of failing deep in the search."""
    from a3cs.search.multitrial import _FINALIST_KEYS, _read_trials
    from a3cs_common.io import load_json_records

    path = tmp_path / "trials.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=r"^--resume: got '.*trials.json'; allowed: the "
                       r"search's trials.json"):
        _read_trials(path)
    with pytest.raises(ConfigError, match="start a new --out directory"):
        load_json_records(path, field="--resume", expected="the search's finalists.json",
                          keys=_FINALIST_KEYS)


def test_a_trial_with_a_field_the_search_does_not_know_is_one_line(tmp_path: Path) -> None:
    from a3cs.search.multitrial import TrialRecord, _read_trials

    record = {"trial": 0, "sample": {}, "reward": 1.0, "proxy_return": None,
              "latency_s": 1e-5, "reference_latency_s": 2e-5, "env_steps": 0}
    path = tmp_path / "trials.json"
    path.write_text(json.dumps([record]))
    assert _read_trials(path) == [TrialRecord(**record)]
    path.write_text(json.dumps([{**record, "unknown": 1}]))
    with pytest.raises(ConfigError, match=r"fields of a3cs\.search\.multitrial\.TrialRecord"):
        _read_trials(path)


def test_a_damaged_co_searched_accelerator_state_is_one_line(tmp_path: Path) -> None:
    from a3cs.search.accelerator_target import AcceleratorTarget
    from a3cs.search.run import _load_target_state

    space = Path(__file__).resolve().parents[1] / "a3cs/data/zc706_cosearch_space.yaml"
    target = AcceleratorTarget(str(space))
    with torch.no_grad():
        target.logits[0].add_(1.0)
    path = tmp_path / "target_state.pt"
    torch.save(target.state_dict(), path)
    restored = AcceleratorTarget(str(space))
    _load_target_state(restored, path)
    assert torch.equal(restored.logits[0], target.logits[0])
    for damaged in (random.Random(1).randbytes(300), b""):
        path.write_bytes(damaged)
        with pytest.raises(ConfigError, match=r"target_state\.pt as it wrote it"):
            _load_target_state(restored, path)
    torch.save({"logits": []}, path)
    with pytest.raises(ConfigError, match=r"target_state\.pt as it wrote it"):
        _load_target_state(restored, path)
