"""MinAtar Breakout as tensors (minatar/environments/breakout.py, line by line)."""

from __future__ import annotations

import torch

from a3cs.rl.batched.core import BatchedMinAtar, Draws

# ball direction after hitting a side wall, the top/a brick/the paddle's centre, a corner
_BOUNCE_X = (1, 0, 3, 2)
_BOUNCE_Y = (3, 2, 1, 0)
_BOUNCE_PADDLE_EDGE = (2, 3, 0, 1)
_DX = (-1, 1, 1, -1)
_DY = (-1, -1, 1, 1)


class Breakout(BatchedMinAtar):
    game = "breakout"
    channels = 4  # paddle, ball, trail, brick
    minimal_actions = ("n", "l", "r")
    draws_per_step = 2  # sticky action, the reset's ball side

    def _allocate(self) -> None:
        device = self.device
        self._bounce_x = torch.tensor(_BOUNCE_X, device=device)
        self._bounce_y = torch.tensor(_BOUNCE_Y, device=device)
        self._bounce_edge = torch.tensor(_BOUNCE_PADDLE_EDGE, device=device)
        self._dx = torch.tensor(_DX, device=device)
        self._dy = torch.tensor(_DY, device=device)
        self.ball_x, self.ball_y, self.ball_dir = self._long(), self._long(), self._long()
        self.last_x, self.last_y, self.pos = self._long(), self._long(), self._long()
        self.bricks = torch.zeros((self.num_envs, 10, 10), dtype=torch.bool, device=device)
        self.strike = self._bool()

    def _reset_where(self, mask: torch.Tensor, draws: Draws) -> None:
        right = draws.randint(mask, 2) == 1
        ball_x = torch.where(right, 9, 0)
        where = mask
        self.ball_y = torch.where(where, 3, self.ball_y)
        self.ball_x = torch.where(where, ball_x, self.ball_x)
        self.ball_dir = torch.where(where, torch.where(right, 3, 2), self.ball_dir)
        self.pos = torch.where(where, 4, self.pos)
        fresh = torch.zeros_like(self.bricks)
        fresh[:, 1:4, :] = True
        self.bricks = torch.where(where[:, None, None], fresh, self.bricks)
        self.strike = torch.where(where, False, self.strike)
        self.last_x = torch.where(where, self.ball_x, self.last_x)
        self.last_y = torch.where(where, self.ball_y, self.last_y)

    def _act(self, actions: torch.Tensor, draws: Draws) -> tuple[torch.Tensor, torch.Tensor]:
        reward = self._long()
        self.pos = torch.where(actions == 1, (self.pos - 1).clamp(min=0), self.pos)
        self.pos = torch.where(actions == 3, (self.pos + 1).clamp(max=9), self.pos)
        self.last_x, self.last_y = self.ball_x, self.ball_y
        new_x = self.ball_x + self._dx[self.ball_dir]
        new_y = self.ball_y + self._dy[self.ball_dir]
        direction = self.ball_dir
        side = (new_x < 0) | (new_x > 9)
        new_x = new_x.clamp(0, 9)
        direction = torch.where(side, self._bounce_x[direction], direction)
        top = new_y < 0
        brick_y = new_y.clamp(0, 9)
        brick_here = self.bricks[self.rows, brick_y, new_x]
        brick = ~top & brick_here
        bottom = ~top & ~brick & (new_y == 9)
        # the top
        new_y = torch.where(top, 0, new_y)
        direction = torch.where(top, self._bounce_y[direction], direction)
        # a brick, struck once: the ball passes through while strike is set
        hit = brick & ~self.strike
        reward += hit.long()
        self.bricks[self.rows, brick_y, new_x] = brick_here & ~hit
        new_y = torch.where(hit, self.last_y, new_y)
        direction = torch.where(hit, self._bounce_y[direction], direction)
        self.strike = brick  # set by any brick in the way, cleared otherwise
        # the paddle row: new bricks when none are left, then the paddle or the end
        empty = bottom & ~self.bricks.flatten(1).any(1)
        self.bricks[:, 1:4, :] |= empty[:, None, None]
        centre = bottom & (self.ball_x == self.pos)
        edge = bottom & ~centre & (new_x == self.pos)
        direction = torch.where(centre, self._bounce_y[direction], direction)
        direction = torch.where(edge, self._bounce_edge[direction], direction)
        new_y = torch.where(centre | edge, self.last_y, new_y)
        terminal = bottom & ~centre & ~edge
        self.ball_dir = direction
        self.ball_x, self.ball_y = new_x, new_y
        return reward, terminal

    def _observe(self) -> torch.Tensor:
        n = self.num_envs
        obs = torch.zeros((n, 4, 10, 10), dtype=torch.bool, device=self.device)
        obs[self.rows, 0, 9, self.pos] = True
        obs[self.rows, 1, self.ball_y, self.ball_x] = True
        obs[self.rows, 2, self.last_y, self.last_x] = True
        obs[:, 3] = self.bricks
        return obs
