"""MinAtar Asterix as tensors (minatar/environments/asterix.py, line by line)."""

from __future__ import annotations

import torch

from a3cs.rl.batched.core import BatchedMinAtar, Draws

RAMP_INTERVAL = 100
INIT_SPAWN_SPEED = 10
INIT_MOVE_INTERVAL = 5
SLOTS = 8  # entity slot i moves along row i + 1


class Asterix(BatchedMinAtar):
    game = "asterix"
    channels = 4  # player, enemy, trail, gold
    minimal_actions = ("n", "l", "u", "r", "d")
    draws_per_step = 4  # sticky; a spawn's side, kind and slot

    def _allocate(self) -> None:
        shape = (self.num_envs, SLOTS)
        self.alive = torch.zeros(shape, dtype=torch.bool, device=self.device)
        self.x = torch.zeros(shape, dtype=torch.long, device=self.device)
        self.right = torch.zeros_like(self.alive)  # moving right (spawned on the left)
        self.gold = torch.zeros_like(self.alive)
        self.player_x, self.player_y = self._long(), self._long()
        self.spawn_speed, self.spawn_timer = self._long(), self._long()
        self.move_speed, self.move_timer = self._long(), self._long()
        self.ramp_timer, self.ramp_index = self._long(), self._long()
        self.slot_rows = torch.arange(1, SLOTS + 1, device=self.device)
        self.slot_index = torch.arange(SLOTS, device=self.device)

    def _reset_where(self, mask: torch.Tensor, draws: Draws) -> None:
        self.player_x = torch.where(mask, 5, self.player_x)
        self.player_y = torch.where(mask, 5, self.player_y)
        self.alive = self.alive & ~mask[:, None]
        for name, value in (("spawn_speed", INIT_SPAWN_SPEED), ("spawn_timer", INIT_SPAWN_SPEED),
                            ("move_speed", INIT_MOVE_INTERVAL),
                            ("move_timer", INIT_MOVE_INTERVAL), ("ramp_timer", RAMP_INTERVAL),
                            ("ramp_index", 0)):
            setattr(self, name, torch.where(mask, value, getattr(self, name)))

    def _spawn(self, mask: torch.Tensor, draws: Draws) -> None:
        right = draws.uniform(mask) < 1 / 2
        gold = draws.uniform(mask) < 1 / 3
        free = ~self.alive
        free_count = free.sum(1)
        mask = mask & (free_count > 0)
        choice = torch.floor(draws.uniform(mask) * free_count).long()
        # the choice-th free slot, in slot order
        slot = free & (free.long().cumsum(1) - 1 == choice[:, None])
        new = mask[:, None] & slot
        self.alive |= new
        self.x = torch.where(new, torch.where(right, 0, 9)[:, None], self.x)
        self.right = torch.where(new, right[:, None], self.right)
        self.gold = torch.where(new, gold[:, None], self.gold)

    def _collide(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Entities on the player: gold is collected (+1 each), an enemy ends the game."""
        on_player = self.alive & (self.x == self.player_x[:, None]) & (
            self.slot_rows == self.player_y[:, None])
        collected = on_player & self.gold
        self.alive &= ~collected
        return collected.sum(1), (on_player & ~self.gold).any(1)

    def _act(self, actions: torch.Tensor, draws: Draws) -> tuple[torch.Tensor, torch.Tensor]:
        spawning = self.spawn_timer == 0
        self._spawn(spawning, draws)
        self.spawn_timer = torch.where(spawning, self.spawn_speed, self.spawn_timer)
        self.player_x = torch.where(actions == 1, (self.player_x - 1).clamp(min=0),
                                    self.player_x)
        self.player_x = torch.where(actions == 3, (self.player_x + 1).clamp(max=9),
                                    self.player_x)
        self.player_y = torch.where(actions == 2, (self.player_y - 1).clamp(min=1),
                                    self.player_y)
        self.player_y = torch.where(actions == 4, (self.player_y + 1).clamp(max=8),
                                    self.player_y)
        reward, terminal = self._collide()
        moving = self.move_timer == 0
        self.move_timer = torch.where(moving, self.move_speed, self.move_timer)
        step = moving[:, None] & self.alive
        self.x = torch.where(step, self.x + torch.where(self.right, 1, -1), self.x)
        self.alive &= ~(step & ((self.x < 0) | (self.x > 9)))
        collected, hit = self._collide()
        reward += torch.where(moving, collected, 0)
        terminal |= moving & hit
        self.spawn_timer -= 1
        self.move_timer -= 1
        # difficulty ramping
        ramping = (self.spawn_speed > 1) | (self.move_speed > 1)
        counting = ramping & (self.ramp_timer >= 0)
        ramp = ramping & ~counting
        self.ramp_timer = torch.where(counting, self.ramp_timer - 1, self.ramp_timer)
        faster_moves = ramp & (self.move_speed > 1) & (self.ramp_index % 2 == 1)
        self.move_speed -= faster_moves.long()
        self.spawn_speed -= (ramp & (self.spawn_speed > 1)).long()
        self.ramp_index += ramp.long()
        self.ramp_timer = torch.where(ramp, RAMP_INTERVAL, self.ramp_timer)
        return reward, terminal

    def _observe(self) -> torch.Tensor:
        n = self.num_envs
        obs = torch.zeros((n, 4, 10, 10), dtype=torch.bool, device=self.device)
        obs[self.rows, 0, self.player_y, self.player_x] = True
        rows = self.rows[:, None].expand(n, SLOTS)
        y = self.slot_rows.expand(n, SLOTS)
        x = self.x.clamp(0, 9)
        obs[rows, torch.where(self.gold, 3, 1), y, x] |= self.alive
        back_x = self.x - torch.where(self.right, 1, -1)
        trail = self.alive & (back_x >= 0) & (back_x <= 9)
        obs[rows, 2, y, back_x.clamp(0, 9)] |= trail
        return obs
