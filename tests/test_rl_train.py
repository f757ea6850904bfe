"""Training end to end: resume, determinism, the CLI, bad inputs, and PPO on CartPole."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from a3cs.cli import main
from a3cs.rl.checkpoint import export_agent, load_agent, load_teacher, read_checkpoint
from a3cs.rl.config import TrainConfig
from a3cs.rl.defaults import with_env_defaults
from a3cs.rl.evaluate import evaluate_policy, model_policy
from a3cs.rl.train import train, training
from a3cs_common.errors import ConfigError
from a3cs_common.io import dump_yaml
from hw_sim.files import load_workload
from nas.arch import load_arch

REPO = Path(__file__).resolve().parents[1]
ONE_BY_4 = REPO / "experiments/arch/minatar_one_by_4.yaml"
SMALL = {"env_id": "MinAtar/Breakout-v1", "num_envs": 4, "n_steps": 16, "batch_size": 32,
         "n_epochs": 2, "total_steps": 64}


def small_config(**changes: object) -> TrainConfig:
    values = dict(SMALL)
    values.update(changes)
    return TrainConfig.model_validate(values)


def config_file(tmp_path: Path, name: str = "train.yaml", **changes: object) -> str:
    values = dict(SMALL)
    values.update(changes)
    path = tmp_path / name
    path.write_text(dump_yaml(values))
    return str(path)


@pytest.mark.slow
def test_resume_reproduces_the_next_updates_exactly(tmp_path: Path) -> None:
    """N updates in one go == N/2, a kill right after the checkpoint, and --resume N/2.
    A 1xN architecture and a teacher make masks, pruning and distillation part of the state."""
    teacher = train(small_config(total_steps=128, seed=7), tmp_path / "teacher", progress=False)
    config = small_config(total_steps=6 * 64, checkpoint_every=3, seed=1,
                          arch=load_arch(str(ONE_BY_4)), sparsity_start=0.0, sparsity_end=0.8,
                          teacher=str(teacher.checkpoint), ent_coef=0.01)
    whole = train(config, tmp_path / "whole", progress=False)
    train(config, tmp_path / "killed", progress=False, stop_after_updates=3)
    assert read_checkpoint(tmp_path / "killed")["update"] == 3
    resumed = train(config, tmp_path / "killed", resume=True, progress=False)
    assert resumed.global_step == whole.global_step == 6 * 64
    a, b = load_agent(whole.checkpoint).model, load_agent(resumed.checkpoint).model
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q) if isinstance(p, torch.Tensor) else p == q, name
    assert a.head.sparsity > 0.5  # pruning happened on the way
    rows_a = (tmp_path / "whole" / "metrics.csv").read_text().splitlines()
    rows_b = (tmp_path / "killed" / "metrics.csv").read_text().splitlines()
    strip = [lambda r: r.split(",")[:2] + r.split(",")[4:6] + r.split(",")[7:]]
    assert [strip[0](r) for r in rows_a] == [strip[0](r) for r in rows_b]
    optimizer_a = read_checkpoint(whole.checkpoint)["optimizer"]["state"]
    optimizer_b = read_checkpoint(resumed.checkpoint)["optimizer"]["state"]
    for key in optimizer_a:
        assert torch.equal(optimizer_a[key]["exp_avg"], optimizer_b[key]["exp_avg"])


def test_same_seed_same_weights(tmp_path: Path) -> None:
    config = small_config(total_steps=128, seed=3)
    a = train(config, tmp_path / "a", progress=False)
    b = train(config, tmp_path / "b", progress=False)
    for p, q in zip(load_agent(a.checkpoint).model.parameters(),
                    load_agent(b.checkpoint).model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_exported_agent_is_the_checkpoints_network_alone(tmp_path: Path) -> None:
    result = train(small_config(total_steps=128, seed=1), tmp_path / "run", progress=False)
    exported = export_agent(result.checkpoint, tmp_path / "agent.pt")
    assert (tmp_path / "agent.pt").stat().st_size < result.checkpoint.stat().st_size
    assert set(read_checkpoint(tmp_path / "agent.pt")) == {"format", "config", "arch", "spaces",
                                                             "model", "global_step"}
    original = load_agent(result.checkpoint)
    assert exported.global_step == original.global_step
    for p, q in zip(exported.model.parameters(), original.model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert load_teacher(tmp_path / "agent.pt").kind == original.model.kind


def test_training_yields_each_update_then_returns_what_train_returns(tmp_path: Path) -> None:
    config = small_config(total_steps=4 * 64, seed=2)
    loop = training(config, tmp_path / "stepped", progress=False)
    rows = []
    while True:
        try:
            rows.append(next(loop))
        except StopIteration as finished:
            stepped = finished.value
            break
    assert [row["update"] for row in rows] == [1, 2, 3, 4]
    assert [row["global_step"] for row in rows] == [64, 128, 192, 256]
    whole = train(config, tmp_path / "whole", progress=False)
    assert (stepped.global_step, stepped.updates, stepped.episodes) == (
        whole.global_step, whole.updates, whole.episodes)
    for p, q in zip(load_agent(stepped.checkpoint).model.parameters(),
                    load_agent(whole.checkpoint).model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_training_checks_its_input_at_the_first_step(tmp_path: Path) -> None:
    loop = training(small_config(env_id="MinAtar/Breakot-v1"), tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()  # nothing happens before the first next()
    with pytest.raises(ConfigError, match="Breakot"):
        next(loop)


def test_clip_range_anneals_linearly_when_asked(tmp_path: Path) -> None:
    rows = {}
    for schedule in ("constant", "linear"):
        config = small_config(total_steps=4 * 64, clip_range=0.2, clip_schedule=schedule)
        train(config, tmp_path / schedule, progress=False)
        with open(tmp_path / schedule / "metrics.csv") as handle:
            rows[schedule] = [float(row["clip_range"]) for row in csv.DictReader(handle)]
    assert rows["constant"] == [0.2] * 4
    assert rows["linear"] == pytest.approx([0.2, 0.15, 0.1, 0.05])


def test_resuming_a_run_whose_metrics_lack_newer_columns(tmp_path: Path) -> None:
    """A checkpoint of an older version has metrics rows without the columns added since;
    the resumed run writes them empty there instead of failing."""
    config = small_config(total_steps=4 * 64, checkpoint_every=2)
    run = tmp_path / "run"
    train(config, run, progress=False, stop_after_updates=2)
    checkpoint = read_checkpoint(run / "checkpoint.pt")
    for row in checkpoint["metrics"]:
        del row["clip_range"]
    torch.save(checkpoint, run / "checkpoint.pt")
    train(config, run, resume=True, progress=False)
    with open(run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["clip_range"] for row in rows] == ["", "", "0.2", "0.2"]


def test_cli_train_evaluate_simulate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    rc = main(["train", "--config", config_file(tmp_path), "--steps", "128", "--out", str(run),
               "--arch", str(REPO / "experiments/arch/minatar_circulant_b8.yaml"),
               "--no-progress"])
    assert rc == 0
    for name in ("config.yaml", "arch.yaml", "workload.yaml", "checkpoint.pt", "metrics.csv"):
        assert (run / name).is_file(), name
    assert any((run / "tb").iterdir())  # TensorBoard events
    workload = load_workload(str(run / "workload.yaml"))
    assert workload.layer("head").weight_format.type == "block_circulant"
    capsys.readouterr()

    assert main(["evaluate", str(run / "checkpoint.pt"), "--episodes", "3", "--format",
                 "json", "--gif", str(tmp_path / "ep.gif")]) == 0
    out = capsys.readouterr().out
    result = json.loads(out.splitlines()[0])
    assert result["episodes"] == 3 and result["min_return"] <= result["mean_return"]
    assert (tmp_path / "ep.gif").read_bytes()[:3] == b"GIF"
    # --policy-seed: the action sampling's own seed, as `a3cs search` evaluates
    checkpoint = str(run / "checkpoint.pt")
    agent = load_agent(checkpoint)
    expected = evaluate_policy(model_policy(agent.model, seed=2), agent.config.env_id, 3,
                               seed=10_002)
    assert main(["evaluate", checkpoint, "--episodes", "3", "--seed", "10002",
                 "--policy-seed", "2", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["mean_return"] == expected.mean_return

    hw = str(REPO / "experiments/hw/block_circulant_engine.yaml")
    for workload_arg in (str(run / "workload.yaml"), str(run / "checkpoint.pt")):
        assert main(["simulate", "--hw", hw, "--workload", workload_arg, "--format",
                     "json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert "head" in json.dumps(report)

    # The trained agent's own layers, priced by an accelerator search (2 x 2 options).
    space = tmp_path / "space.yaml"
    space.write_text(f"name: tiny\nbase: {hw}\nparameters:\n  dataflow: [ws, os]\n"
                     "  word_bits: [8, 16]\n")
    assert main(["accel-search", "--workload", str(run / "checkpoint.pt"), "--space",
                 str(space), "--method", "exhaustive", "--out", str(tmp_path / "accel"),
                 "--quiet"]) == 0
    searched = json.loads((tmp_path / "accel" / "search.json").read_text())
    assert searched["space_size"] == 4


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert needle in err, err


def test_bad_inputs_fail_before_training(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config_file(tmp_path)
    out = str(tmp_path / "bad")
    _one_line_error(capsys, ["train", "--env", "MinAtar/Brekout-v1", "--out", out], "--env")
    conv_arch = str(REPO / "experiments/arch/minatar_reference.yaml")
    _one_line_error(capsys, ["train", "--env", "CartPole-v1", "--arch", conv_arch, "--out", out],
                    "layers[0].op")
    _one_line_error(capsys, ["train", "--config", cfg, "--out", out, "--resume"], "--resume")
    (tmp_path / "bad.yaml").write_text("n_step: 3\n")
    _one_line_error(capsys, ["train", "--config", str(tmp_path / "bad.yaml"), "--out", out],
                    "did you mean 'n_steps'")
    _one_line_error(capsys, ["train", "--config", cfg, "--out", out, "--teacher",
                             str(tmp_path / "missing.pt")], "--teacher")
    _one_line_error(capsys, ["train", "--config", cfg, "--out", out, "--num-envs", "3"],
                    "batch_size")
    assert not (tmp_path / "bad").exists()  # nothing was trained or written

    # a run to resume, a CartPole teacher, a file that is not a checkpoint
    run = tmp_path / "run"
    assert main(["train", "--config", cfg, "--steps", "64", "--out", str(run),
                 "--no-progress"]) == 0
    cart = tmp_path / "cart"
    assert main(["train", "--env", "CartPole-v1", "--steps", "64", "--out", str(cart),
                 "--num-envs", "4", "--config", config_file(tmp_path, "cart.yaml",
                                                         env_id="CartPole-v1"),
                 "--no-progress"]) == 0
    capsys.readouterr()
    _one_line_error(capsys, ["train", "--config", cfg, "--steps", "128", "--out", str(run)],
                    "pass --resume")
    _one_line_error(capsys, ["train", "--out", str(run), "--resume", "--steps", "128",
                             "--arch", str(ONE_BY_4)], "another architecture")
    _one_line_error(capsys, ["train", "--out", str(run), "--resume", "--seed", "9"], "seed")
    _one_line_error(capsys, ["train", "--config", cfg, "--out", out, "--teacher", str(cart)],
                    "action space Discrete(3)")
    not_ckpt = tmp_path / "x.pt"
    not_ckpt.write_bytes(b"not a checkpoint")
    _one_line_error(capsys, ["evaluate", str(not_ckpt)], "CHECKPOINT")
    _one_line_error(capsys, ["evaluate", str(run), "--episodes", "0"], "--episodes")
    _one_line_error(capsys, ["evaluate", str(cart), "--gif", str(tmp_path / "c.gif")], "--gif")
    hw = str(REPO / "experiments/hw/ws_32x32.yaml")
    _one_line_error(capsys, ["simulate", "--hw", hw, "--workload", str(not_ckpt)], "--workload")
    # resuming with more steps works and continues the count
    assert main(["train", "--out", str(run), "--resume", "--steps", "128",
                 "--no-progress"]) == 0
    assert read_checkpoint(run)["global_step"] == 128


def test_checkpoint_of_another_architecture_is_rejected(tmp_path: Path) -> None:
    run = train(small_config(total_steps=64), tmp_path / "r", progress=False)
    data = read_checkpoint(run.checkpoint)
    data["arch"] = load_arch(str(ONE_BY_4)).to_dict()
    data["model"].pop("head.weight")
    path = tmp_path / "forged.pt"
    torch.save(data, path)
    with pytest.raises(ConfigError, match="weights of the stored architecture"):
        load_agent(path)


@pytest.mark.slow
def test_ppo_solves_cartpole_with_its_defaults(tmp_path: Path) -> None:
    """``a3cs train --env CartPole-v1`` with nothing else (the table's rl-zoo entry: 100 k
    steps, learning rate and clip annealed to 0) ends with a policy at >= 475 (~35 s here;
    seeds 0-2 all evaluate at 500 over 100 episodes, experiments/results/rl_scores)."""
    values, entry = with_env_defaults({"env_id": "CartPole-v1", "seed": 0})
    config = TrainConfig.model_validate(values)
    assert entry.name == "CartPole-v1" and config.total_steps == 100_000
    result = train(config, tmp_path / "cartpole", progress=False)
    agent = load_agent(result.checkpoint)
    evaluation = evaluate_policy(model_policy(agent.model, seed=1), "CartPole-v1", 20)
    assert evaluation.mean_return >= 475, evaluation


def test_tensorboard_holds_every_metrics_column_at_each_update(tmp_path: Path) -> None:
    """What TensorBoard reads back from ``tb/`` is metrics.csv's rows, keyed by global step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(small_config(total_steps=3 * 64), tmp_path / "r", progress=False)
    with open(tmp_path / "r" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    events = EventAccumulator(str(tmp_path / "r" / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert tags == {f"train/{key}" for key in rows[0] if key not in ("update", "global_step")}
    for tag in tags:
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [int(row["global_step"]) for row in rows]
        expected = [float(row[tag.removeprefix("train/")]) for row in rows]
        assert [s.value for s in scalars] == pytest.approx(expected, rel=1e-6, nan_ok=True)


def test_reward_aware_pruning_pauses_while_the_return_drops() -> None:
    from types import SimpleNamespace

    from a3cs.rl.train import _TrainHooks

    config = small_config(sparsity_schedule="reward_aware", sparsity_start=0.1,
                          sparsity_end=0.5, sparsity_tolerance=0.9)
    hooks = _TrainHooks(config, torch.nn.Linear(1, 1))
    returns = iter([10.0, 10.0, 5.0, 8.0, 9.5, 1.0, 1.0])

    def state() -> SimpleNamespace:
        ret = next(returns)
        return SimpleNamespace(collector=SimpleNamespace(recent_mean_return=lambda: ret))

    applied = [hooks._reward_aware_progress(state(), p)
               for p in (0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.95)]
    # holds at 0.2 while the return is below 90 % of its best, catches up when it recovers,
    # and reaches the schedule's end by the deadline (0.9) whatever the return
    assert applied == [0.1, 0.2, 0.2, 0.2, 0.4, 0.4, 0.5]
    restored = _TrainHooks(config, torch.nn.Linear(1, 1))
    restored.load_state_dict(hooks.state_dict())
    assert restored.state_dict() == hooks.state_dict()


@pytest.mark.slow
def test_refined_gradients_train_the_pruned_weights_and_reach_the_sparsity(
        tmp_path: Path) -> None:
    """DCIL: with pruned_gradient refined the pruned blocks keep their values and learn,
    while the mask reaches the architecture's sparsity; without it pruning zeroed them (Adam's
    momentum may move them afterwards, but the forward pass never sees them)."""
    results = {}
    for mode in ("none", "refined"):
        config = small_config(total_steps=8 * 64, seed=2, arch=load_arch(str(ONE_BY_4)),
                              sparsity_start=0.0, sparsity_end=0.5, pruned_gradient=mode)
        results[mode] = load_agent(train(config, tmp_path / mode, progress=False).checkpoint)
    for agent in results.values():
        head = agent.model.head
        assert head.sparsity == pytest.approx(head.target_sparsity, abs=0.05)
        pruned = head._apply_mask(torch.ones_like(head.weight)) == 0
        assert (head.masked_weight().detach()[pruned] == 0).all()
    refined, plain = (results[m].model.head.weight.detach() for m in ("refined", "none"))
    pruned = results["refined"].model.head._apply_mask(torch.ones_like(refined)) == 0
    assert (refined[pruned] != 0).all()
    # the pruned weights learned from the dense pass: larger than momentum alone leaves them
    assert refined[pruned].abs().mean() > plain[
        results["none"].model.head._apply_mask(torch.ones_like(plain)) == 0].abs().mean()


@pytest.mark.slow
def test_row_balanced_pruning_runs_as_fast_as_the_nominal_sparsity(tmp_path: Path) -> None:
    """The 1xN engine runs a row group at the pace of its fullest row: row_balanced keeps every
    row at the same count, the fastest a mask of that density runs, so the trained agent is
    never slower than the architecture's nominal workload (a random mask at the density, what
    the search prices); a layer-wide ranking can leave it slower."""
    from hw_sim.files import load_hardware
    from hw_sim.simulate import simulate

    hw = load_hardware(str(REPO / "experiments/hw/one_by_n_engine.yaml"))
    arch = load_arch(str(ONE_BY_4))
    latency = {}
    for mode in ("layer", "row_balanced"):
        config = small_config(total_steps=4 * 64, seed=0, arch=arch, sparsity_start=0.0,
                              sparsity_end=0.5, block_pruning=mode)
        agent = load_agent(train(config, tmp_path / mode, progress=False).checkpoint)
        counts = agent.model.head.mask.sum(dim=1)
        if mode == "row_balanced":
            assert int(counts.min()) == int(counts.max())
        latency[mode] = simulate(agent.model.workload(batch=1), hw).latency_s
        obs_shape = tuple(agent.obs_space.shape)
    nominal = simulate(arch.workload(obs_shape, 3), hw).latency_s
    assert latency["row_balanced"] <= nominal
    assert latency["layer"] >= latency["row_balanced"]


def test_packaged_teacher_path_and_the_no_teacher_ablation(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    """A teacher recorded by its path in the package's data folder (as ``a3cs search``
    records it) is found; ``--no-teacher`` retrains the same config without distillation."""
    cfg = config_file(tmp_path, teacher="teachers/minatar_breakout.pt")
    distilled = tmp_path / "distilled"
    assert main(["train", "--config", cfg, "--steps", "64", "--out", str(distilled),
                 "--no-progress"]) == 0
    saved = read_checkpoint(distilled)["config"]
    assert saved["teacher"] == "teachers/minatar_breakout.pt"
    # resuming with the teacher given by its absolute path is the same run
    absolute = str(REPO / "a3cs/data/teachers/minatar_breakout.pt")
    assert main(["train", "--out", str(distilled), "--resume", "--steps", "128",
                 "--teacher", absolute, "--no-progress"]) == 0
    ablation = tmp_path / "ablation"
    assert main(["train", "--config", str(distilled / "config.yaml"), "--no-teacher",
                 "--steps", "64", "--out", str(ablation), "--no-progress"]) == 0
    assert read_checkpoint(ablation)["config"]["teacher"] is None
    capsys.readouterr()
    _one_line_error(capsys, ["train", "--config", cfg, "--no-teacher", "--teacher", absolute,
                             "--out", str(tmp_path / "both")], "--no-teacher")


@pytest.mark.parametrize("env_id", ["MinAtar/Breakout-v1", "MinAtar/Seaquest-v1"])
def test_batched_backend_trains_resumes_exactly_and_plays_the_reference_game(
        tmp_path: Path, env_id: str) -> None:
    """``env_backend: batched``: a run killed after its checkpoint and resumed equals the
    uninterrupted one (the environments' tensors and generator are in the checkpoint), and
    the agent is evaluated on the minatar package's game."""
    config = small_config(env_id=env_id, total_steps=6 * 64, checkpoint_every=3, seed=4,
                          env_backend="batched", ent_coef=0.01)
    whole = train(config, tmp_path / "whole", progress=False)
    train(config, tmp_path / "killed", progress=False, stop_after_updates=3)
    resumed = train(config, tmp_path / "killed", resume=True, progress=False)
    a, b = load_agent(whole.checkpoint).model, load_agent(resumed.checkpoint).model
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    assert whole.episodes == resumed.episodes > 0
    agent = load_agent(whole.checkpoint)
    assert agent.config.env_backend == "batched"
    result = evaluate_policy(model_policy(agent.model, seed=0), env_id, 2, seed=0)
    assert result.episodes == 2


def test_batched_backend_refuses_other_envs(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    _one_line_error(capsys, ["train", "--env", "CartPole-v1", "--env-backend", "batched",
                             "--out", str(tmp_path / "x")], "env_backend: got 'batched'")
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batched_backend_on_cuda_same_seed_same_weights(tmp_path: Path) -> None:
    config = small_config(total_steps=4 * 64, seed=3, env_backend="batched", device="cuda",
                          num_envs=64, n_steps=4)
    a = train(config, tmp_path / "a", progress=False)
    b = train(config, tmp_path / "b", progress=False)
    for p, q in zip(load_agent(a.checkpoint).model.parameters(),
                    load_agent(b.checkpoint).model.parameters(), strict=True):
        assert torch.equal(p, q)
