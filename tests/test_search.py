"""`a3cs search` end to end (every method, tiny budgets), kill-and-resume, and bad input."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from a3cs.cli import main
from a3cs.results import read_results
from a3cs.search.prepare import SEARCH_SCORING

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "a3cs/data/zc706_cosearch_space.yaml"
TINY_RL = {"num_envs": 4, "n_steps": 64, "batch_size": 128, "n_epochs": 2}
TINY_BUDGET = {"warmup_steps": 512, "search_steps": 1024, "proxy_steps": 512,
               "retrain_steps": 1024, "eval_episodes": 2, "teacher_steps": 1024}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A (weak) real teacher: the reference network trained for a few rollouts."""
    from a3cs.rl.config import make_config
    from a3cs.rl.train import train

    out = tmp_path_factory.mktemp("teacher")
    result = train(make_config({"env_id": "MinAtar/Breakout-v1", "total_steps": 1024,
                                **TINY_RL}), out, progress=False)
    return str(result.checkpoint)


def _config(tmp_path: Path, name: str = "search.yaml", **fields: object) -> str:
    data = {"env_id": "MinAtar/Breakout-v1", "seed": 0, "target": f"accelerator:{SPACE}",
            "rl": TINY_RL, "budget": TINY_BUDGET, "checkpoint_every": 1, **fields}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["a3cs", "a3cs_no_distill", "hand_designed", "sequential",
                                    "random", "evolution"])
def test_every_method_end_to_end(tmp_path, teacher, method, capsys):
    run_dir = tmp_path / "run"
    code = main(["search", _config(tmp_path), "--method", method, "--teacher", teacher,
                 "--out", str(run_dir), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"results: {run_dir / 'results.json'}" in out
    assert f"pareto plot: {run_dir / 'pareto_fps.png'}" in out
    (row,) = read_results(run_dir)
    assert row.method == method and row.fps > 0 and row.latency_s > 0 and row.energy_pj > 0
    assert row.episodes == 2 and row.flops > 0 and row.params > 0 and row.resources["dsp"] > 0
    assert (run_dir / "results.csv").read_text().startswith("method,")
    state = json.loads((run_dir / "state.json").read_text())
    assert all(state[stage]["done"] for stage in ("teacher", "search", "hardware", "retrain",
                                                  "evaluate", "measure", "results"))
    # the chosen pair loads in the other commands
    assert main(["simulate", "--hw", str(run_dir / "hardware.yaml"), "--workload",
                 str(run_dir / "workload.yaml"), "--format", "json"]) == 0
    simulated = json.loads(capsys.readouterr().out)["summary"]
    assert simulated["fps"] == pytest.approx(row.fps)
    assert main(["estimate", "--hw", str(run_dir / "hardware.yaml"), "--workload",
                 str(run_dir / "workload.yaml")]) == 0
    assert main(["evaluate", str(run_dir / "retrain" / "checkpoint.pt"), "--episodes",
                 "1"]) == 0
    capsys.readouterr()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["a3cs", "random"])
def test_a_search_on_the_batched_games_trains_with_their_entry(tmp_path, teacher, method,
                                                                capsys):
    run_dir = tmp_path / "run"
    config = _config(tmp_path, rl={"env_backend": "batched"}, budget={
        **TINY_BUDGET, "warmup_steps": 2048, "search_steps": 2048, "proxy_steps": 2048,
        "retrain_steps": 2048})
    assert main(["search", config, "--method", method, "--teacher", teacher, "--out",
                 str(run_dir), "--quiet"]) == 0
    assert "defaults: minatar, batched backend (ppo, table v" in (run_dir / "log.txt").read_text()
    retrained = yaml.safe_load((run_dir / "retrain" / "config.yaml").read_text())
    assert (retrained["env_backend"], retrained["num_envs"], retrained["n_epochs"]) == (
        "batched", 128, 2)
    (row,) = read_results(run_dir)
    assert row.episodes == 2 and row.fps > 0
    capsys.readouterr()


def test_a_minatar_search_trains_on_the_batched_games_unless_told_otherwise() -> None:
    """The backend is filled in when the config is read, so the run's config.yaml records it
    and a run re-made from that file trains as it did."""
    from a3cs.search.config import SearchConfig

    assert SearchConfig().rl == {"env_backend": "batched"}
    assert SearchConfig(env_id="MinAtar/Seaquest-v1", rl={"num_envs": 8}).rl == {
        "num_envs": 8, "env_backend": "batched"}
    assert SearchConfig(rl={"env_backend": "default"}).rl == {"env_backend": "default"}
    assert SearchConfig(env_id="CartPole-v1").rl == {}
    recorded = SearchConfig().model_dump(mode="json")
    assert SearchConfig(**recorded) == SearchConfig() and recorded["rl"]["env_backend"] == \
        "batched"


@pytest.mark.slow
def test_cpu_target(tmp_path, teacher, capsys):
    run_dir = tmp_path / "cpu"
    assert main(["search", _config(tmp_path, target="cpu:cortex-a76"), "--teacher", teacher,
                 "--out", str(run_dir), "--quiet"]) == 0
    (row,) = read_results(run_dir)
    assert row.energy_pj is None and row.fps > 0
    assert yaml.safe_load((run_dir / "hardware.yaml").read_text())["cpu_profile"] == \
        "cortex-a76"
    capsys.readouterr()


@pytest.mark.slow
def test_killed_search_resumes_to_the_same_result(tmp_path, teacher, capsys):
    config = _config(tmp_path, budget={**TINY_BUDGET, "search_steps": 4096})
    reference, killed = tmp_path / "straight", tmp_path / "killed"
    command = [sys.executable, "-m", "a3cs", "search", config, "--teacher", teacher, "--quiet"]
    subprocess.run([*command, "--out", str(reference)], check=True, capture_output=True)

    process = subprocess.Popen([*command, "--out", str(killed)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    checkpoint = killed / "search" / "search_checkpoint.pt"
    deadline = time.time() + 600
    while not checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the search finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "results.json").exists()
    state = json.loads((killed / "state.json").read_text())
    assert "search" not in state and state["teacher"]["done"]

    # a search checkpoint another version priced (no scoring.json: before the supernet
    # search recorded it) is not resumed: a one-line error, the checkpoint kept
    older = tmp_path / "older"
    shutil.copytree(killed, older)
    (older / "search" / "scoring.json").unlink()
    saved = (older / "search" / "search_checkpoint.pt").read_bytes()
    resume_older = ["search", config, "--teacher", teacher, "--quiet", "--out", str(older),
                    "--resume"]
    assert "search_checkpoint.pt: got 'a search scored by version 2 or earlier'; allowed: " \
        f"a search scored by this version ({SEARCH_SCORING};" in _bad(resume_older, capsys)
    assert (older / "search" / "search_checkpoint.pt").read_bytes() == saved

    subprocess.run([*command, "--out", str(killed), "--resume"], check=True,
                   capture_output=True)
    (a,), (b,) = read_results(reference), read_results(killed)
    assert (a.score_mean, a.score_std, a.fps, a.latency_s, a.energy_pj, a.flops) == (
        b.score_mean, b.score_std, b.fps, b.latency_s, b.energy_pj, b.flops)
    assert (reference / "arch.yaml").read_text() == (killed / "arch.yaml").read_text()
    assert (reference / "hardware.yaml").read_text() == (killed / "hardware.yaml").read_text()
    # the run's wall time is its stages' over both sessions (stage_time.json)
    stage_time = json.loads((killed / "stage_time.json").read_text())
    state = json.loads((killed / "state.json").read_text())
    assert {stage: state[stage]["wall_time_s"] for stage in stage_time} == stage_time
    assert b.wall_time_s == pytest.approx(sum(v["wall_time_s"] for v in state.values()))
    # nor is the hardware derived for a search another version priced
    for stage in ("hardware", "retrain", "evaluate", "measure", "results"):
        state.pop(stage)
    (older / "state.json").write_text(json.dumps(state))
    (older / "arch.yaml").write_text((killed / "arch.yaml").read_text())
    shutil.copy(killed / "search" / "target_state.pt", older / "search")
    assert "search: got 'a search scored by version 2 or earlier'" in _bad(resume_older, capsys)
    assert not (older / "hardware.yaml").exists()
    # with its record, the same run goes on to the same hardware
    shutil.copy(killed / "search" / "scoring.json", older / "search")
    assert main(resume_older) == 0
    assert (older / "hardware.yaml").read_text() == (killed / "hardware.yaml").read_text()
    capsys.readouterr()


def _bad(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_search_bad_input(tmp_path, teacher, capsys):
    out = tmp_path / "run"
    cfg = _config(tmp_path)

    def bad(*extra: str) -> str:
        return _bad(["search", *extra, "--teacher", teacher, "--out", str(out), "--quiet"],
                    capsys)

    assert "cost.lam: got -1.0; allowed: a number >= 0" in bad(cfg, "--lam", "-1")
    assert "target: got 'gpu:x'; allowed: accelerator:SPACE.yaml or cpu:PROFILE" in bad(
        cfg, "--target", "gpu:x")
    assert "argument --method: invalid choice" in bad(cfg, "--method", "darts")
    assert "--env: got 'MinAtar/Pong-v1'" in bad(cfg, "--env", "MinAtar/Pong-v1")
    assert "target: got 'pentium'; allowed: one of the presets" in bad(cfg, "--target",
                                                                 "cpu:pentium")
    missing = _bad(["search", cfg, "--teacher", str(tmp_path / "nope.pt"), "--out", str(out)],
                   capsys)
    assert "teacher: got" in missing and "checkpoint" in missing
    space = tmp_path / "space.yaml"
    space.write_text("observation: pixels\nnum_layers: 2\nops: [conv3x3]\nwidths: [12]\n"
                     "head_widths: [32]\n")
    assert "widths: got 12; allowed: multiples of" in bad(cfg, "--space", str(space))
    wrong = tmp_path / "bad.yaml"
    wrong.write_text(Path(cfg).read_text() + "budgett: {}\n")
    assert "did you mean 'budget'" in bad(str(wrong))
    assert "--resume: got True; allowed: together with --out" in _bad(
        ["search", cfg, "--resume"], capsys)
    assert "--resume: got" in bad(cfg, "--resume")  # nothing to resume in a fresh folder
    assert "--set: got 'proxy.kind'; allowed: FIELD=VALUE" in bad(cfg, "--set", "proxy.kind")
    assert "--set: got '.kind=x'; allowed: FIELD=VALUE" in bad(cfg, "--set", ".kind=x")
    assert "--set proxy.kind: got '[x'; allowed: a YAML value" in bad(cfg, "--set",
                                                                     "proxy.kind=[x")
    assert "proxy.kind: got 'supernet'" in bad(cfg, "--set", "proxy.kind=supernet")
    assert "did you mean 'trials'" in bad(cfg, "--set", "budget.trails=3")
    assert "--set: got 'proxy.kind'; allowed: a field inside a mapping" in bad(
        cfg, "--set", "proxy=1", "--set", "proxy.kind=rl")
    assert not out.exists() or not any(out.iterdir())  # nothing was trained


def test_teacher_of_another_action_space(tmp_path, capsys):
    from a3cs.rl.config import make_config
    from a3cs.rl.train import train

    cartpole = train(make_config({"env_id": "CartPole-v1", "total_steps": 256, **TINY_RL}),
                     tmp_path / "cartpole", progress=False)
    err = _bad(["search", _config(tmp_path), "--teacher", str(cartpole.checkpoint),
                "--out", str(tmp_path / "run")], capsys)
    assert "teacher: got" in err and ("action space" in err or "observation shape" in err)


@pytest.mark.slow
def test_absolute_penalty_keeps_lambda_and_aims_at_the_target(tmp_path, teacher, capsys):
    config = _config(tmp_path, cost={"lam": 0.5, "target_speedup": 2.0, "penalty": "absolute"})
    run_dir = tmp_path / "run"
    assert main(["search", config, "--teacher", teacher, "--out", str(run_dir), "--quiet"]) == 0
    with (run_dir / "search" / "metrics.csv").open() as handle:
        lams = {row["lam"] for row in csv.DictReader(handle) if row["lam"]}
    assert lams == {"0.5"}  # fixed: the absolute penalty pulls towards the target itself
    summary = [line for line in (run_dir / "log.txt").read_text().splitlines()
               if "what the search bought" in line]
    assert summary and "the hand-designed network (the teacher) scores" in summary[0]
    reference = json.loads((run_dir / "state.json").read_text())["measure"]["reference"]
    assert reference["fps"] > 0 and reference["fps_own_hardware"] > 0
    assert "on its own searched hardware" in summary[0]
    bad = _config(tmp_path, "bad.yaml", cost={"penalty": "absolute"})
    assert main(["search", bad, "--out", str(tmp_path / "bad")]) == 2
    assert "cost.penalty: got 'absolute'; allowed: relative, or absolute together with" in \
        capsys.readouterr().err


def test_research_points_the_accelerator_logits_at_the_accelerator_search() -> None:
    """Auto-NBA's re-search: the logits' most probable configuration is then the one the
    accelerator-only search picks for the network."""
    from a3cs.search.accelerator_target import AcceleratorTarget
    from nas.arch import reference_arch

    target = AcceleratorTarget(str(SPACE))
    workload = reference_arch((10, 10, 4)).workload((10, 10, 4), 3)
    assert target.derived_for(workload).label != target.choose(workload, 0).label
    chosen = target.research(workload, 0, logit=4.0)
    assert chosen.label == target.choose(workload, 0).label
    assert target.derived_for(workload).label == chosen.label
    assert all(float(p.detach().max()) > 0.5 for p in target.probabilities())


@pytest.mark.slow
def test_accelerator_research_gives_the_agent_its_own_accelerator(tmp_path, teacher):
    run_dir = tmp_path / "run"
    config = _config(tmp_path, supernet={"accelerator_research_every": 2})
    assert main(["search", config, "--teacher", teacher, "--out", str(run_dir),
                 "--quiet"]) == 0
    hardware = json.loads((run_dir / "state.json").read_text())["hardware"]["choice"]
    assert "accelerator search over" in hardware["how"]
    # the logits were pointed during the search: Adam's steps of 0.1 alone leave them near 0
    logits = torch.load(run_dir / "search" / "target_state.pt", weights_only=True)["logits"]
    assert all(float(logit.max()) > 2.0 for logit in logits)
    assert main(["search", _config(tmp_path, "bad.yaml",
                                   supernet={"accelerator_research_every": -1}),
                 "--out", str(tmp_path / "bad")]) == 2


@pytest.mark.slow
def test_evolution_with_the_distill_proxy(tmp_path, teacher, capsys):
    """Trials scored by supervised distillation on the teacher's play: no environment steps
    of their own, an agreement per trial, the hardware term of cost.penalty."""
    proxy = {"kind": "distill", "distill_steps": 20, "distill_batch": 32, "train_states": 256,
             "held_out_states": 128}
    config = _config(tmp_path, method="evolution", proxy=proxy,
                     budget={**TINY_BUDGET, "trials": 5},
                     cost={"lam": 0.5, "target_speedup": 2.0, "penalty": "absolute"})
    run_dir = tmp_path / "run"
    assert main(["search", config, "--teacher", teacher, "--out", str(run_dir), "--quiet"]) == 0
    trials = json.loads((run_dir / "search" / "trials.json").read_text())
    scored = [t for t in trials if t["agreement"] is not None]
    assert len(trials) == 5 and scored
    for trial in scored:
        assert 0.0 <= trial["agreement"] <= 1.0 and trial["env_steps"] == 0
        target = trial["reference_latency_s"] / 2.0
        assert trial["reward"] == pytest.approx(
            trial["agreement"] - 0.5 * abs(trial["latency_s"] / target - 1.0))
    assert not list((run_dir / "search").glob("trial_*"))  # no RL trainings
    (row,) = read_results(run_dir)
    assert row.method == "evolution" and row.fps > 0
    # searched hardware: each trial's network on its own accelerator search
    config = _config(tmp_path, "searched.yaml", method="random", proxy=proxy)
    run_dir = tmp_path / "searched"
    assert main(["search", config, "--teacher", teacher, "--out", str(run_dir), "--quiet",
                 "--set", "proxy.hardware=searched", "--set", "budget.trials=2"]) == 0
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["proxy"]["hardware"] == \
        "searched"
    trials = json.loads((run_dir / "search" / "trials.json").read_text())
    assert len(trials) == 2 and all("hw" not in t["sample"] for t in trials)
    assert len({t["reference_latency_s"] for t in trials}) == 1  # the hand-designed one's
    best = max(trials, key=lambda t: t["reward"])
    assert yaml.safe_load((run_dir / "hardware.yaml").read_text()) == \
        best["hardware"]["description"]
    (row,) = read_results(run_dir)
    # the trial measured the architecture's nominal workload, the result the trained agent's
    assert row.latency_s == pytest.approx(best["latency_s"], rel=0.05)
    # feasibility first: a band no trial's latency falls in trains none of them
    run_dir = tmp_path / "band"
    assert main(["search", config, "--teacher", teacher, "--out", str(run_dir), "--quiet",
                 "--set", "proxy.latency_band=1e-9", "--set", "cost.target_speedup=2.0",
                 "--set", "cost.penalty=absolute", "--set", "cost.lam=0.5",
                 "--set", "budget.samples_per_trial=3"]) == 0
    trials = json.loads((run_dir / "search" / "trials.json").read_text())
    assert 2 < len(trials) <= 3 * 2  # untrained samples do not use up the 2 trials' budget
    assert "0 of 2 trials trained: the sample limit (6) was reached" in \
        (run_dir / "log.txt").read_text()
    for trial in trials:
        target = trial["reference_latency_s"] / 2.0
        assert trial["agreement"] is None and trial["reward"] == pytest.approx(
            -1.0 - 0.5 * abs(trial["latency_s"] / target - 1.0))
    assert main(["search", config, "--out", str(tmp_path / "nope"), "--set",
                 "proxy.latency_band=0.1"]) == 2
    assert "proxy.latency_band: got 0.1; allowed: unset, or set together with" in \
        capsys.readouterr().err
    bad = _config(tmp_path, "bad.yaml", proxy={"kind": "supernet"})
    assert main(["search", bad, "--out", str(tmp_path / "bad")]) == 2
    assert "proxy.kind: got 'supernet'" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize(("method", "start"), [("evolution", "random"), ("random", "random"),
                                               ("evolution", "hand_designed")])
def test_resampling_trains_only_networks_in_the_band(tmp_path, teacher, method, start):
    """proxy.out_of_band: resample (Once-for-All's constrained search): a sample outside the
    band is priced and rejected, the strategy draws another; every trial the budget counts is
    trained and in the band, and the run's log says how many were rejected."""
    proxy = {"kind": "distill", "distill_steps": 5, "distill_batch": 32, "train_states": 128,
             "held_out_states": 64, "latency_band": 0.25, "out_of_band": "resample"}
    config = _config(tmp_path, method=method, proxy=proxy,
                     budget={**TINY_BUDGET, "trials": 6, "samples_per_trial": 50},
                     cost={"lam": 0.5, "target_speedup": 2.0, "penalty": "absolute"},
                     evolution={"start": start})
    run_dir = tmp_path / "run"
    assert main(["search", config, "--teacher", teacher, "--out", str(run_dir), "--quiet"]) == 0
    trials = json.loads((run_dir / "search" / "trials.json").read_text())
    if start == "hand_designed":  # the first population is drawn around the reference network
        assert "evolution starts from mutations of the hand-designed network" in \
            (run_dir / "log.txt").read_text()
        population = [t["sample"]["arch"] for t in trials[:4]]
        assert sum(s["layers.0.op"] == "conv3x3" and s["layers.0.width"] == 16
                   for s in population) >= 2
    trained = [t for t in trials if t["agreement"] is not None]
    rejected = [t for t in trials if t["agreement"] is None]
    assert len(trained) == 6 and rejected  # the band is narrow enough to reject some
    for trial in trials:
        off_target = abs(trial["latency_s"] / (trial["reference_latency_s"] / 2.0) - 1.0)
        assert (off_target <= 0.25) == (trial["agreement"] is not None)
    assert f"6 trials trained; {len(rejected)} other distinct networks sampled were outside " \
        "proxy.latency_band (priced, resampled)" in (run_dir / "log.txt").read_text()
    # the same seed proposes the same samples: a second run is the same search
    again = tmp_path / "again"
    assert main(["search", config, "--teacher", teacher, "--out", str(again), "--quiet"]) == 0
    assert json.loads((again / "search" / "trials.json").read_text()) == trials


def test_samples_that_build_the_same_network_are_one_trial():
    from a3cs.search.config import SearchConfig
    from a3cs.search.multitrial import _trial_key, _TrialBudget
    from a3cs.search.prepare import prepare

    prep = prepare(SearchConfig(env_id="MinAtar/Breakout-v1", method="random",
                                target=f"accelerator:{SPACE}"))
    sample = {"layers.0.op": "conv3x3", "layers.0.width": 16, "layers.0.format": "dense",
              "layers.1.op": "conv3x3", "layers.1.width": 32, "layers.1.format": "bc8",
              "layers.2.op": "skip", "layers.2.width": 16, "layers.2.format": "1x8@0.5",
              "head.width": 128, "head.format": "bc16"}
    skipped_differently = {**sample, "layers.2.width": 32, "layers.2.format": "dense"}
    assert _trial_key(prep, {"arch": sample}) == _trial_key(prep, {"arch": skipped_differently})
    # the identity at another position of the trunk builds the same network
    skip_moved = {**sample, "layers.1.op": "skip", "layers.2.op": "conv3x3",
                  "layers.2.width": 32, "layers.2.format": "bc8"}
    assert _trial_key(prep, {"arch": sample}) == _trial_key(prep, {"arch": skip_moved})
    # ... and the same layers in another order do not
    swapped = {**sample, "layers.0.width": 32, "layers.1.width": 16}
    assert _trial_key(prep, {"arch": sample}) != _trial_key(prep, {"arch": swapped})
    assert _trial_key(prep, {"arch": sample}) != _trial_key(
        prep, {"arch": {**sample, "head.format": "dense"}})
    budget = _TrialBudget(trials=2, max_samples=5)
    assert budget.count("a") and not budget.count("a") and budget.trials_done == 1


@pytest.mark.parametrize("method", ["random", "evolution"])
def test_sample_retries_is_the_strategys_patience(method: str) -> None:
    from nni.nas.strategy.utils import SampleValidationError

    from a3cs.search.config import SearchConfig
    from a3cs.search.multitrial import _strategy

    config = SearchConfig(env_id="MinAtar/Breakout-v1", method=method,
                          target=f"accelerator:{SPACE}", budget={"sample_retries": 7})
    strategy = _strategy(config, None, 8)
    calls = []

    def rejected() -> None:
        calls.append(1)
        raise SampleValidationError("outside the band")

    assert strategy._retry_helper.retry(rejected) is None and len(calls) == 7


def test_a_short_search_says_its_teacher_trained_longer():
    from a3cs.search.run import _training_gap

    shipped = str(REPO / "a3cs/data/teachers/minatar_breakout.pt")
    said = _training_gap(shipped, 100_000)
    assert "the teacher trained 10,000,384 steps, the agent 100,000" in said
    assert _training_gap(shipped, 10_000_000) == "" and _training_gap(None, 1) == ""


def test_a_search_does_not_print_nnis_torch_version_alarm() -> None:
    """nni 3.0 warns "your PyTorch version might not be supported" when its NAS package first
    walks a torch newer than it; the strategies work, so a user's run does not show it."""
    alarm = subprocess.run(
        [sys.executable, "-W", "default", "-c", "import nni.nas.strategy"],
        capture_output=True, text=True, check=True)
    if "might not be supported" not in alarm.stderr:
        pytest.skip("this nni does not warn about this torch")
    done = subprocess.run(
        [sys.executable, "-W", "default", "-c",
         "import a3cs.search.multitrial, nni.nas.evaluator, nni.nas.space, nni.nas.strategy"],
        capture_output=True, text=True, check=True)
    assert "might not be supported" not in done.stderr


@pytest.mark.slow
def test_finalists_are_ranked_by_a_short_training_on_validation_episodes(tmp_path, teacher,
                                                                          capsys):
    """budget.finalists: the proxy's best trained trials are each trained briefly (with the
    teacher, as the retrain) and scored on validation episodes; the agent is the best of them,
    with its own hardware; a killed round resumes without training a finished finalist again."""
    proxy = {"kind": "distill", "distill_steps": 5, "distill_batch": 32, "train_states": 128,
             "held_out_states": 64, "hardware": "searched"}
    budget = {**TINY_BUDGET, "trials": 4, "finalists": 3, "finalist_steps": 512,
              "finalist_episodes": 2}
    config = _config(tmp_path, method="evolution", proxy=proxy, budget=budget,
                     cost={"lam": 0.5, "target_speedup": 2.0, "penalty": "absolute"})
    run_dir = tmp_path / "run"
    assert main(["search", config, "--teacher", teacher, "--out", str(run_dir), "--quiet"]) == 0
    trials = json.loads((run_dir / "search" / "trials.json").read_text())
    finalists = json.loads((run_dir / "search" / "finalists.json").read_text())
    by_proxy = sorted((t for t in trials if t["agreement"] is not None),
                      key=lambda t: -t["reward"])[:3]
    assert [f["trial"] for f in finalists] == [t["trial"] for t in by_proxy]
    assert all(f["episodes"] == 2 and f["env_steps"] >= 512 for f in finalists)
    chosen = max(finalists, key=lambda f: f["validation_mean"])  # ties: the proxy's order
    chosen_trial = next(t for t in trials if t["trial"] == chosen["trial"])
    arch = yaml.safe_load((run_dir / "arch.yaml").read_text())
    finalist_arch = yaml.safe_load(
        (run_dir / "search" / f"finalist_{chosen['trial']:03d}" / "arch.yaml").read_text())
    assert {k: v for k, v in arch.items() if k != "name"} == \
        {k: v for k, v in finalist_arch.items() if k != "name"}
    assert yaml.safe_load((run_dir / "hardware.yaml").read_text()) == \
        chosen_trial["hardware"]["description"]
    log = (run_dir / "log.txt").read_text()
    assert f"finalists: trial {chosen['trial']} chosen" in log
    state = json.loads((run_dir / "state.json").read_text())
    assert state["search"]["env_steps"] >= 3 * 512  # the round's steps count as the search's
    # resumed after the first finalist: the other two are trained, the first is not
    first = run_dir / "search" / f"finalist_{finalists[0]['trial']:03d}" / "checkpoint.pt"
    resumed = tmp_path / "resumed"
    shutil.copytree(run_dir, resumed)
    (resumed / "search" / "finalists.json").write_text(json.dumps(finalists[:1]))
    for stage in ("search", "hardware", "retrain", "evaluate", "measure", "results"):
        state.pop(stage, None)
    (resumed / "state.json").write_text(json.dumps(state))
    for finalist in finalists[1:]:
        shutil.rmtree(resumed / "search" / f"finalist_{finalist['trial']:03d}")
    mtime = (resumed / first.relative_to(run_dir)).stat().st_mtime
    assert main(["search", config, "--teacher", teacher, "--out", str(resumed), "--quiet",
                 "--resume"]) == 0
    assert (resumed / first.relative_to(run_dir)).stat().st_mtime == mtime
    assert json.loads((resumed / "search" / "finalists.json").read_text()) == finalists
    assert (resumed / "arch.yaml").read_text() == (run_dir / "arch.yaml").read_text()
    # trials another version of the search scored (no scoring.json: before it existed) are
    # not resumed over: a one-line error, the trials kept
    older = tmp_path / "older"
    shutil.copytree(resumed, older)
    (older / "search" / "scoring.json").unlink()
    (older / "state.json").write_text(json.dumps(state))
    capsys.readouterr()
    assert main(["search", config, "--teacher", teacher, "--out", str(older), "--quiet",
                 "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "trials.json: got 'a search scored by version 2 or " \
        f"earlier'; allowed: a search scored by this version ({SEARCH_SCORING};" in err
    assert (older / "search" / "trials.json").read_text() == json.dumps(trials, indent=1)
    (older / "search" / "scoring.json").write_bytes(b"\x8b\x00garbage\xff")
    assert main(["search", config, "--teacher", teacher, "--out", str(older), "--quiet",
                 "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "scoring.json: got 'a damaged file'" in err
    # the supernet methods have no finalists
    assert main(["search", config, "--out", str(tmp_path / "bad"), "--set",
                 "method=a3cs"]) == 2
    assert "budget.finalists: got 3; allowed: 1 for method a3cs" in capsys.readouterr().err
