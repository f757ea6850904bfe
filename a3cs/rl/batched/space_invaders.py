"""MinAtar SpaceInvaders as tensors (minatar/environments/space_invaders.py, line by line)."""

from __future__ import annotations

import torch

from a3cs.rl.batched.core import BatchedMinAtar, Draws

SHOT_COOL_DOWN = 5
ENEMY_MOVE_INTERVAL = 12
ENEMY_SHOT_INTERVAL = 10


class SpaceInvaders(BatchedMinAtar):
    game = "space_invaders"
    # cannon, alien, alien_left, alien_right, friendly_bullet, enemy_bullet
    channels = 6
    minimal_actions = ("n", "l", "r", "f")
    draws_per_step = 1  # sticky: the game itself draws nothing

    def _allocate(self) -> None:
        grid = (self.num_envs, 10, 10)
        self.aliens = torch.zeros(grid, dtype=torch.bool, device=self.device)
        self.f_bullets = torch.zeros_like(self.aliens)
        self.e_bullets = torch.zeros_like(self.aliens)
        self.pos, self.alien_dir = self._long(), self._long()
        self.move_interval, self.alien_move_timer = self._long(), self._long()
        self.alien_shot_timer, self.ramp_index, self.shot_timer = (self._long(), self._long(),
                                                                   self._long())
        self.wave = torch.zeros(grid, dtype=torch.bool, device=self.device)
        self.wave[:, 0:4, 2:8] = True
        self.columns = torch.arange(10, device=self.device)

    def _reset_where(self, mask: torch.Tensor, draws: Draws) -> None:
        cells = mask[:, None, None]
        self.aliens = torch.where(cells, self.wave, self.aliens)
        self.f_bullets &= ~cells
        self.e_bullets &= ~cells
        for name, value in (("pos", 5), ("alien_dir", -1),
                            ("move_interval", ENEMY_MOVE_INTERVAL),
                            ("alien_move_timer", ENEMY_MOVE_INTERVAL),
                            ("alien_shot_timer", ENEMY_SHOT_INTERVAL), ("ramp_index", 0),
                            ("shot_timer", 0)):
            setattr(self, name, torch.where(mask, value, getattr(self, name)))

    def _at_cannon(self, grid: torch.Tensor) -> torch.Tensor:
        return grid[self.rows, 9, self.pos]

    def _act(self, actions: torch.Tensor, draws: Draws) -> tuple[torch.Tensor, torch.Tensor]:
        fire = (actions == 5) & (self.shot_timer == 0)
        self.f_bullets[self.rows, 9, self.pos] |= fire
        self.shot_timer = torch.where(fire, SHOT_COOL_DOWN, self.shot_timer)
        self.pos = torch.where(~fire & (actions == 1), (self.pos - 1).clamp(min=0), self.pos)
        self.pos = torch.where(~fire & (actions == 3), (self.pos + 1).clamp(max=9), self.pos)
        # bullets: the player's one row up, the aliens' one row down
        self.f_bullets = torch.roll(self.f_bullets, -1, dims=1)
        self.f_bullets[:, 9, :] = False
        self.e_bullets = torch.roll(self.e_bullets, 1, dims=1)
        self.e_bullets[:, 0, :] = False
        terminal = self._at_cannon(self.e_bullets) | self._at_cannon(self.aliens)
        # aliens: sideways until one reaches an edge, then down a row and turn
        moving = self.alien_move_timer == 0
        count = self.aliens.flatten(1).sum(1)
        self.alien_move_timer = torch.where(moving, torch.minimum(count, self.move_interval),
                                            self.alien_move_timer)
        at_edge = ((self.aliens[:, :, 0].any(1) & (self.alien_dir < 0))
                   | (self.aliens[:, :, 9].any(1) & (self.alien_dir > 0)))
        down = moving & at_edge
        sideways = moving & ~at_edge
        terminal |= down & self.aliens[:, 9, :].any(1)
        self.alien_dir = torch.where(down, -self.alien_dir, self.alien_dir)
        shifted = torch.where((self.alien_dir < 0)[:, None, None],
                              torch.roll(self.aliens, -1, dims=2),
                              torch.roll(self.aliens, 1, dims=2))
        self.aliens = torch.where(down[:, None, None], torch.roll(self.aliens, 1, dims=1),
                                  torch.where(sideways[:, None, None], shifted, self.aliens))
        terminal |= moving & self._at_cannon(self.aliens)
        # the alien nearest the cannon (by column, then the lower index) shoots
        shooting = self.alien_shot_timer == 0
        self.alien_shot_timer = torch.where(shooting, ENEMY_SHOT_INTERVAL,
                                            self.alien_shot_timer)
        occupied = self.aliens.any(1)  # [N, 10] columns
        distance = (self.columns - self.pos[:, None]).abs() * 10 + self.columns
        column = torch.where(occupied, distance, 1000).argmin(1)
        in_column = self.aliens[self.rows, :, column]  # [N, 10] rows
        lowest = torch.where(in_column, torch.arange(10, device=self.device), -1).amax(1)
        self.e_bullets[self.rows, lowest.clamp(min=0), column] |= shooting & (lowest >= 0)
        kills = self.aliens & self.f_bullets
        reward = kills.flatten(1).sum(1)
        self.aliens &= ~kills
        self.f_bullets &= ~kills
        self.shot_timer -= (self.shot_timer > 0).long()
        self.alien_move_timer -= 1
        self.alien_shot_timer -= 1
        cleared = ~self.aliens.flatten(1).any(1)
        ramp = cleared & (self.move_interval > 6)
        self.move_interval -= ramp.long()
        self.ramp_index += ramp.long()
        self.aliens = torch.where(cleared[:, None, None], self.wave, self.aliens)
        return reward, terminal

    def _observe(self) -> torch.Tensor:
        n = self.num_envs
        obs = torch.zeros((n, 6, 10, 10), dtype=torch.bool, device=self.device)
        obs[self.rows, 0, 9, self.pos] = True
        obs[:, 1] = self.aliens
        left = (self.alien_dir < 0)[:, None, None]
        obs[:, 2] = self.aliens & left
        obs[:, 3] = self.aliens & ~left
        obs[:, 4] = self.f_bullets
        obs[:, 5] = self.e_bullets
        return obs
