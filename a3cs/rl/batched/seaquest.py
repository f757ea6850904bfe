"""MinAtar Seaquest as tensors (minatar/environments/seaquest.py).

MinAtar keeps Seaquest's bullets, enemies and divers in Python lists, appends new ones at the
end and walks most lists in reverse while removing from them, so the list order decides
which of several objects on one cell is hit, collected or removed.  Here each kind lives in a
fixed number of slots with an insertion stamp standing for its list position, and each
sequential loop becomes the same assignment computed at once: objects on one cell are ranked
by stamp, and the k-th one processed meets the k-th partner still there.  Capacities are
bounds of the game (one enemy spawn a step at most, an enemy leaves the screen within 31
steps at the fastest, the cannon fires once every 6 steps, a diver spawns every 30 steps
and lives 61); ``overflow`` records a spawn that found no free slot, which the equivalence
tests check never happens.
"""

from __future__ import annotations

import torch

from a3cs.rl.batched.core import BatchedMinAtar, Draws

RAMP_INTERVAL = 100
MAX_OXYGEN = 200
INIT_SPAWN_SPEED = 20
DIVER_SPAWN_SPEED = 30
INIT_MOVE_INTERVAL = 5
SHOT_COOL_DOWN = 5
ENEMY_SHOT_INTERVAL = 10
DIVER_MOVE_INTERVAL = 5
CAPACITY = {"f_bullet": 8, "fish": 32, "sub": 32, "e_bullet": 64, "diver": 8}


class _Objects:
    """One kind of object in slots: ``alive``, ``x``, ``y``, ``right`` (direction),
    ``timer`` (moves), ``shot`` (subs' shot timer) and ``stamp`` (list position), ``[N, S]``."""

    def __init__(self, num_envs: int, slots: int, device: torch.device) -> None:
        zeros = torch.zeros((num_envs, slots), dtype=torch.long, device=device)
        self.alive = torch.zeros((num_envs, slots), dtype=torch.bool, device=device)
        self.right = torch.zeros_like(self.alive)
        self.x, self.y, self.timer, self.shot, self.stamp = (zeros.clone() for _ in range(5))

    def clear(self, mask: torch.Tensor) -> None:
        self.alive &= ~mask[:, None]

    def append(self, mask: torch.Tensor, stamp: torch.Tensor, **values: torch.Tensor
               ) -> torch.Tensor:
        """Put one new object where ``mask`` in the first free slot, at the end of the list;
        where no slot is free (never, see the module docstring), True is returned."""
        free = ~self.alive
        first = free & (free.long().cumsum(1) == 1)
        new = mask[:, None] & first
        self.alive |= new
        self.stamp = torch.where(new, stamp[:, None], self.stamp)
        for name, value in values.items():
            setattr(self, name, torch.where(new, value[:, None], getattr(self, name)))
        return mask & ~free.any(1)

    def step_x(self, mask: torch.Tensor) -> None:
        """Move one cell in the object's direction where ``mask`` ([N, S])."""
        self.x = torch.where(mask, self.x + torch.where(self.right, 1, -1), self.x)

    def in_range(self) -> torch.Tensor:
        return (self.x >= 0) & (self.x <= 9)


SINK = 100  # the cell index of objects left out (10 x 10 cells are 0..99)


def _cells(objects: _Objects, mask: torch.Tensor) -> torch.Tensor:
    """``[N, S]``: each selected object's cell (``y * 10 + x``), :data:`SINK` otherwise."""
    return torch.where(mask, objects.y * 10 + objects.x.clamp(0, 9), SINK)


def _count_on_cell(objects: _Objects, mask: torch.Tensor, of: _Objects,
                   of_mask: torch.Tensor) -> torch.Tensor:
    """``[N, S]``: for each selected object, how many selected objects of ``of`` share its
    cell (0 for objects left out)."""
    cells = _cells(of, of_mask)
    counts = torch.zeros((cells.shape[0], SINK + 1), dtype=torch.long, device=cells.device)
    counts.scatter_add_(1, cells, torch.ones_like(cells))
    counts[:, SINK] = 0
    return counts.gather(1, _cells(objects, mask))


def _rank_on_cell(objects: _Objects, mask: torch.Tensor, descending: bool) -> torch.Tensor:
    """``[N, S]``: how many selected objects on the same cell come before each one in the
    processing order (list order by stamp, or reversed), by one sort on (cell, stamp)."""
    stamps = -objects.stamp if descending else objects.stamp
    span = 1 << 40  # stamps count steps of one episode: far below
    key = _cells(objects, mask) * span + (stamps + span // 2)
    order = key.argsort(dim=1)
    sorted_cells = _cells(objects, mask).gather(1, order)
    position = torch.arange(order.shape[1], device=order.device).expand_as(order)
    first = torch.ones_like(sorted_cells, dtype=torch.bool)
    first[:, 1:] = sorted_cells[:, 1:] != sorted_cells[:, :-1]
    group_start = torch.where(first, position, 0).cummax(dim=1).values
    return torch.empty_like(order).scatter_(1, order, position - group_start)


class Seaquest(BatchedMinAtar):
    game = "seaquest"
    # sub_front, sub_back, friendly_bullet, trail, enemy_bullet, enemy_fish, enemy_sub,
    # oxygen_guage, diver_guage, diver
    channels = 10
    minimal_actions = ("n", "l", "u", "r", "d", "f")
    draws_per_step = 6  # sticky; an enemy's side, kind, row; a diver's side, row

    def _allocate(self) -> None:
        n, device = self.num_envs, self.device
        for kind, slots in CAPACITY.items():
            setattr(self, kind, _Objects(n, slots, device))
        self.sub_x, self.sub_y, self.oxygen, self.diver_count = (self._long() for _ in range(4))
        self.sub_right, self.surface = self._bool(), self._bool()
        self.e_spawn_speed, self.e_spawn_timer, self.d_spawn_timer = (self._long()
                                                                      for _ in range(3))
        self.move_speed, self.ramp_index, self.shot_timer = (self._long() for _ in range(3))
        self.next_stamp = self._long()
        self.overflow = self._bool()

    def _reset_where(self, mask: torch.Tensor, draws: Draws) -> None:
        for kind in CAPACITY:
            getattr(self, kind).clear(mask)
        for name, value in (("oxygen", MAX_OXYGEN), ("diver_count", 0), ("sub_x", 5),
                            ("sub_y", 0), ("e_spawn_speed", INIT_SPAWN_SPEED),
                            ("e_spawn_timer", INIT_SPAWN_SPEED),
                            ("d_spawn_timer", DIVER_SPAWN_SPEED),
                            ("move_speed", INIT_MOVE_INTERVAL), ("ramp_index", 0),
                            ("shot_timer", 0)):
            setattr(self, name, torch.where(mask, value, getattr(self, name)))
        self.sub_right = self.sub_right & ~mask
        self.surface = self.surface | mask

    def _stamp(self, mask: torch.Tensor) -> torch.Tensor:
        stamp = self.next_stamp.clone()
        self.next_stamp += mask.long()
        return stamp

    def _spawn_enemy(self, mask: torch.Tensor, draws: Draws) -> None:
        right = draws.uniform(mask) < 1 / 2
        is_sub = draws.uniform(mask) < 1 / 3
        row = draws.randint(mask, 1, 9)
        opposite = torch.zeros_like(mask)
        for kind in (self.sub, self.fish):  # no spawn in a row going the other way
            opposite |= (kind.alive & (kind.y == row[:, None])
                         & (kind.right != right[:, None])).any(1)
        mask = mask & ~opposite
        x = torch.where(right, 0, 9)
        timer = self.move_speed
        for kind, chosen in ((self.sub, mask & is_sub), (self.fish, mask & ~is_sub)):
            self.overflow |= kind.append(chosen, self._stamp(chosen), x=x, y=row, right=right,
                                         timer=timer,
                                         shot=torch.full_like(timer, ENEMY_SHOT_INTERVAL))

    def _spawn_diver(self, mask: torch.Tensor, draws: Draws) -> None:
        right = draws.uniform(mask) < 1 / 2
        row = draws.randint(mask, 1, 9)
        self.overflow |= self.diver.append(mask, self._stamp(mask), x=torch.where(right, 0, 9),
                                           y=row, right=right,
                                           timer=torch.full_like(row, DIVER_MOVE_INTERVAL))

    def _at_sub(self, objects: _Objects) -> torch.Tensor:
        return (objects.alive & (objects.x == self.sub_x[:, None])
                & (objects.y == self.sub_y[:, None]))

    def _enemies_meet_bullets(self, enemies: _Objects, eligible: torch.Tensor) -> torch.Tensor:
        """The loop of subs (or fish) over friendly bullets: each eligible enemy, in reverse
        list order, is destroyed with the first bullet (list order) left on its cell."""
        bullets = self.f_bullet
        enemy_rank = _rank_on_cell(enemies, eligible, descending=True)
        bullets_here = _count_on_cell(enemies, eligible, bullets, bullets.alive)
        destroyed = eligible & (enemy_rank < bullets_here)
        bullet_rank = _rank_on_cell(bullets, bullets.alive, descending=False)
        enemies_here = _count_on_cell(bullets, bullets.alive, enemies, eligible)
        bullets.alive &= ~(bullet_rank < enemies_here)
        enemies.alive &= ~destroyed
        return destroyed.sum(1)

    def _act(self, actions: torch.Tensor, draws: Draws) -> tuple[torch.Tensor, torch.Tensor]:
        reward = self._long()
        terminal = self._bool()
        spawn = self.e_spawn_timer == 0
        self._spawn_enemy(spawn, draws)
        self.e_spawn_timer = torch.where(spawn, self.e_spawn_speed, self.e_spawn_timer)
        spawn = self.d_spawn_timer == 0
        self._spawn_diver(spawn, draws)
        self.d_spawn_timer = torch.where(spawn, DIVER_SPAWN_SPEED, self.d_spawn_timer)

        # the player: fire, or move
        fire = (actions == 5) & (self.shot_timer == 0)
        self.overflow |= self.f_bullet.append(fire, self._stamp(fire), x=self.sub_x,
                                              y=self.sub_y, right=self.sub_right)
        self.shot_timer = torch.where(fire, SHOT_COOL_DOWN, self.shot_timer)
        left, right = ~fire & (actions == 1), ~fire & (actions == 3)
        self.sub_x = torch.where(left, (self.sub_x - 1).clamp(min=0), self.sub_x)
        self.sub_x = torch.where(right, (self.sub_x + 1).clamp(max=9), self.sub_x)
        self.sub_right = torch.where(left, False, torch.where(right, True, self.sub_right))
        self.sub_y = torch.where(~fire & (actions == 2), (self.sub_y - 1).clamp(min=0),
                                 self.sub_y)
        self.sub_y = torch.where(~fire & (actions == 4), (self.sub_y + 1).clamp(max=8),
                                 self.sub_y)

        # friendly bullets (reverse list order): each hits the first fish on its cell, else
        # the first sub
        bullets = self.f_bullet
        bullets.step_x(bullets.alive)
        bullets.alive &= bullets.in_range()
        order = _rank_on_cell(bullets, bullets.alive, descending=True)
        fish_here = _count_on_cell(bullets, bullets.alive, self.fish, self.fish.alive)
        subs_here = _count_on_cell(bullets, bullets.alive, self.sub, self.sub.alive)
        bullets_here = _count_on_cell(self.fish, self.fish.alive, bullets, bullets.alive)
        fish_rank = _rank_on_cell(self.fish, self.fish.alive, descending=False)
        fish_hit = self.fish.alive & (fish_rank < bullets_here)
        bullets_here = _count_on_cell(self.sub, self.sub.alive, bullets, bullets.alive)
        fish_on_sub = _count_on_cell(self.sub, self.sub.alive, self.fish, self.fish.alive)
        sub_rank = _rank_on_cell(self.sub, self.sub.alive, descending=False)
        sub_hit = self.sub.alive & (sub_rank < bullets_here - fish_on_sub)
        bullets.alive &= ~(order < fish_here + subs_here)
        reward += fish_hit.sum(1) + sub_hit.sum(1)
        self.fish.alive &= ~fish_hit
        self.sub.alive &= ~sub_hit

        # divers (reverse list order): collected on the sub's cell, before or after their
        # move, while fewer than 6 are on board
        divers = self.diver
        before = self._at_sub(divers)
        moves = divers.alive & (divers.timer == 0)
        divers.timer = torch.where(moves, DIVER_MOVE_INTERVAL, torch.where(
            divers.alive, divers.timer - 1, divers.timer))
        moved = divers.x + torch.where(divers.right, 1, -1)
        after = moves & ~before & (moved >= 0) & (moved <= 9) & (
            moved == self.sub_x[:, None]) & (divers.y == self.sub_y[:, None])
        wants = before | after
        queue = (wants[:, None, :] & (divers.stamp[:, None, :] > divers.stamp[:, :, None])
                 ).sum(2)
        room = (6 - self.diver_count).clamp(min=0)
        collected = wants & (queue < room[:, None])
        self.diver_count += collected.sum(1)
        # a diver not collected before moving moves (one left on a full sub included)
        divers.x = torch.where(moves & ~(before & collected), moved, divers.x)
        divers.alive &= ~collected & divers.in_range()

        # enemy subs (reverse list order); a sub leaving or shot this step fires too
        subs = self.sub
        shooting = subs.alive & (subs.shot == 0)
        hit, sub_reward = self._move_enemies(subs)
        terminal |= hit
        reward += sub_reward
        self._fire(shooting, subs)
        subs.shot = torch.where(shooting, ENEMY_SHOT_INTERVAL, subs.shot - 1)

        # enemy bullets: the sub is hit before or after they move
        e_bullets = self.e_bullet
        terminal |= self._at_sub(e_bullets).any(1)
        e_bullets.step_x(e_bullets.alive)
        e_bullets.alive &= e_bullets.in_range()
        terminal |= self._at_sub(e_bullets).any(1)

        # enemy fish (reverse list order)
        hit, fish_reward = self._move_enemies(self.fish)
        terminal |= hit
        reward += fish_reward

        # timers, oxygen, surfacing
        self.e_spawn_timer -= (self.e_spawn_timer > 0).long()
        self.d_spawn_timer -= (self.d_spawn_timer > 0).long()
        self.shot_timer -= (self.shot_timer > 0).long()
        terminal |= self.oxygen <= 0
        below = self.sub_y > 0
        self.oxygen -= below.long()
        arriving = ~below & ~self.surface
        self.surface = torch.where(below, False, self.surface)
        terminal |= arriving & (self.diver_count == 0)
        surfacing = arriving & (self.diver_count != 0)
        reward += self._surface(surfacing)
        return reward, terminal

    def _move_enemies(self, enemies: _Objects) -> tuple[torch.Tensor, torch.Tensor]:
        """MinAtar's loop over subs or fish: each on the sub ends the game, before or after
        its move (every ``move_speed + 1`` steps); one leaving the screen goes; one that moved
        meets the friendly bullets.  ``(terminal, reward)``, ``[N]`` each."""
        terminal = self._at_sub(enemies).any(1)
        moves = enemies.alive & (enemies.timer == 0)
        enemies.timer = torch.where(moves, self.move_speed[:, None], torch.where(
            enemies.alive, enemies.timer - 1, enemies.timer))
        enemies.step_x(moves)
        out = moves & ~enemies.in_range()
        at_sub = moves & ~out & self._at_sub(enemies)
        terminal |= at_sub.any(1)
        enemies.alive &= ~out
        reward = self._enemies_meet_bullets(enemies, moves & ~out & ~at_sub & enemies.alive)
        return terminal, reward

    def _fire(self, shooting: torch.Tensor, subs: _Objects) -> None:
        """Enemy bullets from every shooting sub, each in its own free slot: the k-th
        shooting sub (slot order) takes the k-th free slot."""
        e_bullets = self.e_bullet
        slots = e_bullets.alive.shape[1]
        free = ~e_bullets.alive
        free_first = (e_bullets.alive.long() * slots
                      + torch.arange(slots, device=self.device)).argsort(dim=1)
        shot_rank = shooting.long().cumsum(1) - 1
        self.overflow |= shooting.sum(1) > free.sum(1)
        placed = shooting & (shot_rank < free.sum(1, keepdim=True))
        # unplaced subs write to an extra column, dropped after the scatter
        target = torch.where(placed, free_first.gather(1, shot_rank.clamp(0, slots - 1)), slots)
        for name, value in (("alive", placed), ("x", subs.x), ("y", subs.y),
                            ("right", subs.right), ("stamp", torch.zeros_like(subs.stamp))):
            current = getattr(e_bullets, name)
            widened = torch.cat([current, current[:, :1]], dim=1)
            if name == "alive":
                widened = widened.scatter(1, target, placed) | torch.cat(
                    [current, torch.zeros_like(current[:, :1])], dim=1)
            else:
                keep = widened.gather(1, target)
                widened = widened.scatter(1, target, torch.where(placed, value.to(
                    current.dtype), keep))
            setattr(e_bullets, name, widened[:, :slots])

    def _surface(self, mask: torch.Tensor) -> torch.Tensor:
        full = mask & (self.diver_count == 6)
        reward = torch.where(full, self.oxygen * 10 // MAX_OXYGEN, 0)
        self.diver_count = torch.where(full, 0, self.diver_count)
        self.surface = self.surface | mask
        self.oxygen = torch.where(mask, MAX_OXYGEN, self.oxygen)
        self.diver_count -= mask.long()  # also after a full load: MinAtar leaves it at -1
        ramp = mask & ((self.e_spawn_speed > 1) | (self.move_speed > 2))
        self.move_speed -= (ramp & (self.move_speed > 2) & (self.ramp_index % 2 == 1)).long()
        self.e_spawn_speed -= (ramp & (self.e_spawn_speed > 1)).long()
        self.ramp_index += ramp.long()
        return reward

    def _observe(self) -> torch.Tensor:
        n, rows = self.num_envs, self.rows
        # counts, not flags: objects share cells, and a dead slot's stale position may
        # coincide with a live one's (an indexed write would keep either)
        obs = torch.zeros((n, 10, 10, 10), dtype=torch.uint8, device=self.device)
        obs[rows, 0, self.sub_y, self.sub_x] = 1
        back_x = self.sub_x - torch.where(self.sub_right, 1, -1)
        obs[rows, 1, self.sub_y, back_x % 10] = 1
        columns = torch.arange(10, device=self.device)
        oxygen_cells = self.oxygen.clamp(min=0) * 10 // MAX_OXYGEN
        obs[:, 7, 9, :] = (columns < oxygen_cells[:, None]).to(torch.uint8)
        obs[:, 8, 9, :] = ((columns >= 9 - self.diver_count[:, None]) & (columns < 9)).to(
            torch.uint8)
        for kind, channel, trail in ((self.f_bullet, 2, False), (self.e_bullet, 4, False),
                                     (self.fish, 5, True), (self.sub, 6, True),
                                     (self.diver, 9, True)):
            env = rows[:, None].expand_as(kind.x)
            obs.index_put_((env, torch.full_like(kind.x, channel), kind.y.clamp(0, 9),
                            kind.x.clamp(0, 9)), kind.alive.to(torch.uint8), accumulate=True)
            if trail:
                back = kind.x - torch.where(kind.right, 1, -1)
                shown = kind.alive & (back >= 0) & (back <= 9)
                obs.index_put_((env, torch.full_like(kind.x, 3), kind.y.clamp(0, 9),
                                back.clamp(0, 9)), shown.to(torch.uint8), accumulate=True)
        return obs > 0
