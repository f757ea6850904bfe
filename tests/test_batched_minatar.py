"""The batched MinAtar games against the reference ``minatar`` package, step for step.

Each game runs N environments for 10 k steps in both implementations from the same uniforms:
the batched one takes them as a tensor; MinAtar's own code (``minatar.Environment``, sticky
actions and difficulty ramping on, its RandomState replaced by :class:`ReplayedRandom`, which
serves the same uniforms as numpy's definitions turn them into draws) is reset after every
terminal step, as a3cs's vector env does.  Observations, rewards, terminations and the number
of draws each step took must be identical, under random and scripted actions.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from minatar import Environment

from a3cs.rl.batched import GAMES, make_batched_env
from a3cs_common.errors import ConfigError


class ReplayedRandom:
    """numpy's RandomState calls MinAtar makes, served from given uniforms in call order."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.used = 0

    def load(self, values: list[float]) -> None:
        self.values, self.used = values, 0

    def _next(self) -> float:
        value = self.values[self.used]
        self.used += 1
        return value

    def rand(self, *size: int) -> float | np.ndarray:
        if not size:
            return self._next()
        return np.array([self._next() for _ in range(math.prod(size))]).reshape(size)

    def randint(self, low: int, high: int | None = None, size: int | None = None
                ) -> int | np.ndarray:
        if high is None:
            low, high = 0, low
        if size is None:
            return low + math.floor(self._next() * (high - low))
        return np.array([low + math.floor(self._next() * (high - low)) for _ in range(size)])


def _reference(game: str, count: int) -> tuple[list[Environment], ReplayedRandom]:
    replayed = ReplayedRandom()
    envs = []
    for _ in range(count):
        env = Environment(game, sticky_action_prob=0.1, difficulty_ramping=True)
        env.random = env.env.random = replayed
        envs.append(env)
    return envs, replayed


def _scripted(game: str, state: np.ndarray, step: int, action_set: list[int]) -> int:
    """A policy that plays (so episodes get long and reach the games' later phases)."""
    letter = "n"
    if game == "breakout":  # meet the ball with the paddle's centre or, at times, its edge
        paddle = np.argmax(state[9, :, 0])
        ball_x = np.argwhere(state[:, :, 1])[0][1]
        trail_x = np.argwhere(state[:, :, 2])[0][1]
        target = ball_x + (ball_x - trail_x) * ((step // 50) % 2)
        letter = "l" if target < paddle else "r" if target > paddle else "n"
    elif game == "freeway":
        letter = "u"
    elif game == "space_invaders":  # under the nearest alien column, firing; dodge bullets
        cannon = int(np.argmax(state[9, :, 0]))
        columns = np.flatnonzero(state[:, :, 1].any(0))
        target = columns[np.argmin(np.abs(columns - cannon))] if columns.size else cannon
        danger = state[6:9, cannon, 5].any()
        if danger:
            letter = "l" if cannon > 0 else "r"
        else:
            letter = "f" if target == cannon else "l" if target < cannon else "r"
    elif game == "asterix":
        letter = ("u", "l", "d", "r", "n")[(step // 3) % 5]
    elif game == "seaquest":
        letter = _seaquest_pilot(state)
    index = "nlurdf".index(letter)
    return action_set.index(index) if index in action_set else 0


def _run_both(batched, reference: list[Environment], replayed: ReplayedRandom,
              rng: np.random.Generator, steps: int, policy: str,
              on_reset=None) -> tuple[int, float]:
    """Step both implementations ``steps`` times from their current states, checking every
    step; the episodes ended and the reward collected.  ``on_reset(i)`` may change
    environment i's state (in both) after each of its resets."""
    action_set = batched.action_set.tolist()
    states = [env.state() for env in reference]
    episodes, rewards = 0, 0.0
    for step in range(steps):
        if policy == "random":
            actions = rng.integers(0, len(action_set), len(reference))
        else:
            actions = np.array([_scripted(batched.game, s, step, action_set) for s in states])
        uniforms = rng.random((len(reference), batched.draws_per_step))
        obs, reward, terminal, used = batched.step_with(torch.from_numpy(actions),
                                                        torch.from_numpy(uniforms))
        for i, env in enumerate(reference):
            replayed.load(uniforms[i].tolist())
            ref_reward, ref_terminal = env.act(action_set[actions[i]])
            if ref_terminal:
                env.reset()
            assert replayed.used == used[i], (step, i, "draws")
            assert (float(reward[i]), bool(terminal[i])) == (ref_reward, ref_terminal), (
                step, i)
            states[i] = env.state()
            episodes += ref_terminal
            rewards += ref_reward
        expected = np.stack(states).transpose(0, 3, 1, 2)
        np.testing.assert_array_equal(obs.numpy(), expected, err_msg=f"step {step}")
        if on_reset is not None:
            for i in np.flatnonzero(terminal.numpy()):
                on_reset(int(i))
                states[i] = reference[i].state()
    return episodes, rewards


def _start(game_name: str, num_envs: int, rng: np.random.Generator):
    batched = make_batched_env(f"MinAtar/{game_name}-v1", num_envs, seed=0)
    reference, replayed = _reference(batched.game, num_envs)
    uniforms = rng.random((num_envs, batched.draws_per_step))
    used = batched.reset_with(torch.from_numpy(uniforms))
    for i, env in enumerate(reference):
        replayed.load(uniforms[i].tolist())
        env.reset()
        assert replayed.used == used[i]
    return batched, reference, replayed


def _seaquest_pilot(state: np.ndarray) -> str:
    """Dive, shoot what shares the row, dodge, collect divers, surface on low oxygen."""
    (y, x), = np.argwhere(state[:, :, 0])
    facing_right = state[y, (x - 1) % 10, 1]
    oxygen, divers = state[9, :, 7].sum(), state[9, :, 8].sum()
    enemies = state[:, :, 5] | state[:, :, 6]
    if y == 0:
        return "d"
    if oxygen <= 3 and divers > 0:
        return "u"
    near = enemies[max(0, y - 1):y + 2, max(0, x - 2):x + 3].any() or \
        state[max(0, y - 1):y + 2, max(0, x - 1):x + 2, 4].any()
    if near and not enemies[y].any():
        return "d" if y < 4 else "u"
    if enemies[y].any():
        columns = np.flatnonzero(enemies[y])
        target = columns[np.argmin(np.abs(columns - x))]
        if abs(target - x) <= 1:
            return "u" if y > 1 else "d"
        wants_right = target > x
        return "f" if wants_right == facing_right else ("r" if wants_right else "l")
    found = np.argwhere(state[:, :, 9])
    if found.size:
        dy, dx = found[np.argmin(np.abs(found - [y, x]).sum(1))] - [y, x]
        return "d" if dy > 0 else "u" if dy < 0 and y > 1 else "r" if dx > 0 else "l"
    return "f"


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["random", "scripted"])
@pytest.mark.parametrize("game_name", sorted(GAMES))
def test_batched_game_equals_minatar_step_for_step(game_name: str, policy: str) -> None:
    rng = np.random.default_rng(1234)
    batched, reference, replayed = _start(game_name, 4, rng)
    episodes, rewards = _run_both(batched, reference, replayed, rng, 10_000, policy)
    assert episodes > 0 and rewards > 0  # the run reached ends of episodes and scores


def test_space_invaders_wave_cleared_and_ramped_as_minatar() -> None:
    """A wave cleared (the next one faster) and aliens at the bottom row: states too rare
    for the policies above, set in both implementations, then stepped on."""
    rng = np.random.default_rng(7)
    batched, reference, replayed = _start("SpaceInvaders", 2, rng)
    for i, env in enumerate(reference):
        game = env.env
        game.alien_map[:] = 0
        game.f_bullet_map[:] = 0
        if i == 0:  # one alien left, a bullet under it: cleared next step
            game.alien_map[3, 5] = 1
            game.f_bullet_map[4, 5] = 1
        else:  # the wave at the left edge one row above the cannon's, about to come down
            game.alien_map[8, 0:4] = 1
            game.alien_move_timer = 1
        batched.aliens[i] = torch.from_numpy(game.alien_map.astype(bool))
        batched.f_bullets[i] = torch.from_numpy(game.f_bullet_map.astype(bool))
        batched.alien_move_timer[i] = game.alien_move_timer
    _run_both(batched, reference, replayed, rng, 1, "random")
    assert reference[0].env.enemy_move_interval == 11 == int(batched.move_interval[0])
    episodes, _ = _run_both(batched, reference, replayed, rng, 60, "random")
    assert episodes >= 1  # the landed wave ended an episode
    _run_both(batched, reference, replayed, rng, 2_000, "random")


@pytest.mark.slow
def test_seaquest_at_full_difficulty_and_a_full_load_as_minatar() -> None:
    """Every episode started at MinAtar's fastest Seaquest (an enemy a step, moving every 3
    steps: the most objects at once) with 5 divers on board (surfacing with 6 pays the
    oxygen bonus and leaves the count at -1), piloted for 5 k steps."""
    rng = np.random.default_rng(11)
    batched, reference, replayed = _start("Seaquest", 4, rng)

    def hardest(i: int) -> None:
        game = reference[i].env
        game.e_spawn_speed, game.move_speed, game.diver_count = 1, 2, 5
        batched.e_spawn_speed[i], batched.move_speed[i], batched.diver_count[i] = 1, 2, 5

    for i in range(4):
        hardest(i)
    episodes, rewards = _run_both(batched, reference, replayed, rng, 5_000, "scripted",
                                  on_reset=hardest)
    assert episodes > 0 and rewards > 0 and not bool(batched.overflow.any())


def test_seeded_runs_repeat_and_pickle_mid_run() -> None:
    """Same seed, same episodes; a pickled env continues exactly (checkpoints pickle it)."""
    for game_name in sorted(GAMES):
        first = make_batched_env(f"MinAtar/{game_name}-v1", 16, seed=3)
        second = make_batched_env(f"MinAtar/{game_name}-v1", 16, seed=3)
        gen = torch.Generator().manual_seed(0)
        actions = torch.randint(0, first.single_action_space.n, (300, 16), generator=gen)
        for t in range(150):
            a, b = first.step(actions[t]), second.step(actions[t])
            assert all(torch.equal(x, y) for x, y in zip(a[:4], b[:4], strict=True))
        copy = pickle.loads(pickle.dumps(first))
        for t in range(150, 300):
            a, b = first.step(actions[t]), copy.step(actions[t])
            assert all(torch.equal(x, y) for x, y in zip(a[:4], b[:4], strict=True))


def test_envs_without_a_batched_backend_are_refused() -> None:
    with pytest.raises(ConfigError, match="env_backend"):
        make_batched_env("CartPole-v1", 4, 0)
    with pytest.raises(ConfigError, match="num_envs"):
        make_batched_env("MinAtar/Breakout-v1", 0, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("game_name", sorted(GAMES))
def test_batched_game_on_cuda_equals_cpu(game_name: str) -> None:
    """Given the same uniforms and actions, the games step identically on CUDA and CPU."""
    rng = np.random.default_rng(5)
    envs = {device: make_batched_env(f"MinAtar/{game_name}-v1", 64, 0, device)
            for device in ("cpu", "cuda")}
    uniforms = torch.from_numpy(rng.random((64, envs["cpu"].draws_per_step)))
    for env in envs.values():
        env.reset_with(uniforms)
    for _ in range(2_000):
        actions = torch.from_numpy(rng.integers(0, envs["cpu"].single_action_space.n, 64))
        uniforms = torch.from_numpy(rng.random((64, envs["cpu"].draws_per_step)))
        cpu, cuda = (env.step_with(actions, uniforms) for env in envs.values())
        for a, b in zip(cpu, cuda, strict=True):
            assert torch.equal(a, b.cpu())
