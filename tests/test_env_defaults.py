"""The per-environment defaults table: lookup, override order, validation, CLI use."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from a3cs.cli import main
from a3cs.rl.config import TrainConfig
from a3cs.rl.defaults import ALGORITHMS, defaults_for, load_table, with_env_defaults
from a3cs.rl.envs import MINATAR_GAMES, env_family
from a3cs_common.errors import ConfigError


def test_every_entry_is_a_valid_config_that_cites_its_source() -> None:
    table = load_table()
    assert isinstance(table["version"], int)
    groups = [table["envs"], table["families"], *table["backends"].values()]
    for entries in groups:
        for name, entry in entries.items():
            assert len(entry["source"]) > 10, name
            for algo in set(entry) - {"source"}:
                assert algo in ALGORITHMS
                config = TrainConfig.model_validate({**entry[algo], "algo": algo})
                assert config.rollout_steps % config.batch_size == 0


@pytest.mark.parametrize("env_id", [*(f"MinAtar/{g}-v1" for g in MINATAR_GAMES),
                                    "CartPole-v1", "Acrobot-v1", "MountainCarContinuous-v0",
                                    "ALE/Pong-v5", "HalfCheetah-v5"])
def test_every_family_make_env_supports_has_a_ppo_entry(env_id: str) -> None:
    entry = defaults_for(env_id, "ppo")
    assert entry.values, env_id
    assert entry.name in (env_id, env_family(env_id))
    assert entry.describe().startswith(f"defaults: {entry.name} (ppo, table v")


def test_the_id_entry_wins_over_the_family_and_users_win_over_both() -> None:
    assert defaults_for("CartPole-v1", "ppo").name == "CartPole-v1"
    assert defaults_for("Pendulum-v1", "ppo").name == "Pendulum-v1"
    assert defaults_for("MountainCarContinuous-v0", "ppo").name == "classic"
    values, entry = with_env_defaults({"env_id": "CartPole-v1", "n_epochs": 3})
    assert entry.name == "CartPole-v1"
    assert values["n_epochs"] == 3 and values["n_steps"] == 32 and values["gamma"] == 0.98
    values, entry = with_env_defaults({})  # TrainConfig's default environment
    assert entry.name == "minatar" and values["num_envs"] == entry.values["num_envs"]


def test_a_backend_changes_its_family_field_by_field_and_users_win_over_it() -> None:
    family = defaults_for("MinAtar/Breakout-v1", "ppo")
    batched = defaults_for("MinAtar/Breakout-v1", "ppo", backend="batched")
    assert batched.name == "minatar, batched backend"
    assert batched.source.startswith(family.source + "; batched backend: ")
    changed = {k for k in batched.values if batched.values[k] != family.values.get(k)}
    assert changed == {"num_envs", "n_steps", "n_epochs", "learning_rate"}
    assert batched.values["batch_size"] == family.values["batch_size"]
    config = TrainConfig.model_validate({**batched.values, "env_backend": "batched"})
    assert config.rollout_steps % config.batch_size == 0
    values, entry = with_env_defaults({"env_id": "MinAtar/Breakout-v1",
                                       "env_backend": "batched", "n_epochs": 4})
    assert entry == batched and values["n_epochs"] == 4 and values["num_envs"] == 128
    assert with_env_defaults({"env_id": "MinAtar/Breakout-v1"})[1] == family
    # a family the backend does not change keeps its entry
    assert defaults_for("CartPole-v1", "ppo", backend="batched").name == "CartPole-v1"
    with pytest.raises(ConfigError, match="env_backend: got 'gpu'; allowed: default or batched"):
        with_env_defaults({"env_id": "MinAtar/Breakout-v1", "env_backend": "gpu"})


def test_an_algorithm_without_a_section_gets_its_generic_defaults() -> None:
    entry = defaults_for("MinAtar/Breakout-v1", "a2c")
    assert entry.values == {} and "generic defaults" in entry.describe()
    values, _ = with_env_defaults({"env_id": "MinAtar/Breakout-v1", "algo": "a2c"})
    config = TrainConfig.model_validate(values)
    assert (config.n_steps, config.optimizer) == (5, "rmsprop")


@pytest.mark.parametrize(("section", "needle"), [
    ({"ppo": {"n_step": 5}}, "envs.X.ppo.n_step"),
    ({"ppo": {"learning_rate": -1.0}}, "learning_rate"),
    ({"dqn": {"n_steps": 5}}, "envs.X.dqn"),
    ({"ppo": {"n_steps": 5}}, "source"),
])
def test_a_malformed_table_is_a_one_line_error(tmp_path: Path, section: dict,
                                              needle: str) -> None:
    entry = dict(section)
    if needle != "source":
        entry["source"] = "somewhere, tuned"
    path = tmp_path / "table.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "envs": {"X": entry}}))
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")) as error:
        load_table(path)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(("backends", "needle"), [
    ({"gpu": {"minatar": {"source": "tuned", "ppo": {}}}}, "env_defaults.backends: got"),
    ({"batched": ["minatar"]}, "env_defaults.backends: got"),
    ({"batched": {"minatar": {"source": "tuned", "ppo": {"n_step": 5}}}},
     "env_defaults.backends.batched.minatar.ppo.n_step"),
    ({"batched": {"minatar": {"source": "tuned", "ppo": {"env_backend": "default"}}}},
     "env_defaults.backends.batched.minatar.ppo.env_backend"),
    ({"batched": {"minatar": {"ppo": {"n_epochs": 2}}}}, "a 'source' string"),
])
def test_a_malformed_backend_section_is_a_one_line_error(tmp_path: Path, backends: dict,
                                                         needle: str) -> None:
    path = tmp_path / "table.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "backends": backends}))
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")) as error:
        load_table(path)
    assert "\n" not in str(error.value)


def test_cli_train_uses_and_prints_the_entry_and_a_config_overrides_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "train.yaml"
    cfg.write_text("n_epochs: 2\nnum_envs: 4\n")  # 4 x 32 = 128: the entry's batch of 256 fails
    out = tmp_path / "run"
    assert main(["train", "--env", "CartPole-v1", "--config", str(cfg), "--out", str(out),
                 "--steps", "256", "--no-progress"]) == 2
    assert "batch_size" in capsys.readouterr().err
    cfg.write_text("n_epochs: 2\nbatch_size: 128\nnum_envs: 4\n")
    assert main(["train", "--env", "CartPole-v1", "--config", str(cfg), "--out", str(out),
                 "--steps", "256", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("defaults: CartPole-v1 (ppo, table v")
    used = yaml.safe_load((out / "config.yaml").read_text())
    assert (used["n_epochs"], used["batch_size"], used["num_envs"]) == (2, 128, 4)  # the user's
    assert (used["n_steps"], used["gamma"], used["gae_lambda"]) == (32, 0.98, 0.8)  # the entry's
    assert (used["lr_schedule"], used["clip_schedule"], used["total_steps"]) == (
        "linear", "linear", 256)


@pytest.mark.parametrize(("flags", "needle"), [
    (["--config", "{cfg}"], "learning_rate"),
    (["--num-envs", "-3"], "num_envs"),
    (["--threads", "0"], "torch_threads"),
])
def test_negative_or_non_finite_hyperparameters_are_one_line_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str],
        needle: str) -> None:
    cfg = tmp_path / "bad.yaml"
    for bad in ("nan", ".inf", "-0.001", "1e400"):
        cfg.write_text(f"learning_rate: {bad}\n")
        argv = ["train", "--env", "CartPole-v1", "--out", str(tmp_path / "r"), "--no-progress",
                *[flag.format(cfg=cfg) for flag in flags]]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err
        assert not (tmp_path / "r").exists()


def test_cli_train_with_the_batched_backend_uses_its_entry(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "--env", "MinAtar/Breakout-v1", "--env-backend", "batched",
                 "--steps", "2048", "--out", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith("defaults: minatar, batched backend (ppo, table v")
    used = yaml.safe_load((out / "config.yaml").read_text())
    assert (used["env_backend"], used["num_envs"], used["n_steps"], used["n_epochs"]) == (
        "batched", 128, 16, 2)
    assert used["learning_rate"] == defaults_for(
        "MinAtar/Breakout-v1", "ppo", backend="batched").values["learning_rate"]
