"""MinAtar Freeway as tensors (minatar/environments/freeway.py, line by line)."""

from __future__ import annotations

import torch

from a3cs.rl.batched.core import BatchedMinAtar, Draws

PLAYER_SPEED = 3
TIME_LIMIT = 2500
CARS = 8  # car i drives in row i + 1


class Freeway(BatchedMinAtar):
    game = "freeway"
    channels = 7  # chicken, car, speed1..speed5 (the trail's channel gives the car's speed)
    minimal_actions = ("n", "u", "d")
    draws_per_step = 1 + 2 * 2 * CARS  # sticky; speeds and directions on a crossing, on reset

    def _allocate(self) -> None:
        self.car_x = torch.zeros((self.num_envs, CARS), dtype=torch.long, device=self.device)
        self.car_timer = torch.zeros_like(self.car_x)
        self.car_speed = torch.zeros_like(self.car_x)  # signed: the direction
        self.pos, self.move_timer, self.terminate_timer = self._long(), self._long(), self._long()
        self.car_rows = torch.arange(1, CARS + 1, device=self.device)

    def _randomize_cars(self, mask: torch.Tensor, draws: Draws, initialize: bool) -> None:
        speeds = (1 + torch.floor(draws.take(mask, CARS) * 5)).long()
        directions = torch.sign(draws.take(mask, CARS) - 0.5).long()
        speeds = speeds * directions
        where = mask[:, None]
        if initialize:
            self.car_x = torch.where(where, 0, self.car_x)
        self.car_timer = torch.where(where, speeds.abs(), self.car_timer)
        self.car_speed = torch.where(where, speeds, self.car_speed)

    def _reset_where(self, mask: torch.Tensor, draws: Draws) -> None:
        self._randomize_cars(mask, draws, initialize=True)
        self.pos = torch.where(mask, 9, self.pos)
        self.move_timer = torch.where(mask, PLAYER_SPEED, self.move_timer)
        self.terminate_timer = torch.where(mask, TIME_LIMIT, self.terminate_timer)

    def _act(self, actions: torch.Tensor, draws: Draws) -> tuple[torch.Tensor, torch.Tensor]:
        ready = self.move_timer == 0
        up, down = ready & (actions == 2), ready & (actions == 4)
        self.move_timer = torch.where(up | down, PLAYER_SPEED, self.move_timer)
        self.pos = torch.where(up, (self.pos - 1).clamp(min=0), self.pos)
        self.pos = torch.where(down, (self.pos + 1).clamp(max=9), self.pos)
        crossed = self.pos == 0
        reward = crossed.long()
        self._randomize_cars(crossed, draws, initialize=False)
        self.pos = torch.where(crossed, 9, self.pos)
        # Only the car of the chicken's row can hit it, before or after it moves; the chicken
        # then goes back to row 9, where no car drives, so the other cars' checks are moot.
        in_row = self.car_rows == self.pos[:, None]
        hit = (in_row & (self.car_x == 4)).any(1)
        moves = self.car_timer == 0
        step = torch.where(self.car_speed > 0, 1, -1)
        moved_x = self.car_x + step
        moved_x = torch.where(moved_x < 0, 9, torch.where(moved_x > 9, 0, moved_x))
        self.car_x = torch.where(moves, moved_x, self.car_x)
        self.car_timer = torch.where(moves, self.car_speed.abs(), self.car_timer - 1)
        hit |= (in_row & moves & (self.car_x == 4)).any(1)
        self.pos = torch.where(hit, 9, self.pos)
        self.move_timer -= (self.move_timer > 0).long()
        self.terminate_timer -= 1
        return reward, self.terminate_timer < 0

    def _observe(self) -> torch.Tensor:
        n = self.num_envs
        obs = torch.zeros((n, 7, 10, 10), dtype=torch.bool, device=self.device)
        obs[self.rows, 0, self.pos, 4] = True
        rows = self.rows[:, None].expand(n, CARS)
        car_y = self.car_rows.expand(n, CARS)
        obs[rows, 1, car_y, self.car_x] = True
        back_x = self.car_x - torch.where(self.car_speed > 0, 1, -1)
        back_x = torch.where(back_x < 0, 9, torch.where(back_x > 9, 0, back_x))
        speed = self.car_speed.abs()
        # a speed of 0 (a direction drawn at exactly 0.5) has no trail channel in MinAtar
        trail = torch.where(speed > 0, 1 + speed, 0).clamp(max=6)
        obs[rows, trail, car_y, back_x] |= speed > 0
        return obs
