"""hw_sim's double-buffered memory model, in closed form over a batch of schedules.

:func:`hw_sim.schedule.memory_timeline` walks a layer's run-length-encoded steps::

    occupancy = ceil(load[0] / B) + sum_i max(compute[i], ceil((load[i+1] + store[i-1]) / B))
                + ceil(store[last] / B)

An engine's schedule is nested repetition: chunks within a fold, folds within a block, blocks
within a group, groups within a layer.  A :class:`Pattern` summarises a step sequence by what
its neighbours can change -- only its first step's duration depends on the step before it
(through that step's store) and only its last step's duration on the step after it (through
that step's load) -- so concatenation and repetition are exact and cost a fixed number of
element-wise tensor operations, whatever the number of steps.

Conventions for speed (torch's CPU kernels for boolean tensors and ``torch.where`` are several
times slower than plain arithmetic): every field is a float64 tensor over the batch, holding
integers (exact up to 2**53); conditions are float masks of 0.0 / 1.0 built by :func:`le`
and friends, combined by multiplication, and selections are ``torch.lerp`` with a 0/1 weight,
which returns either operand exactly.  A pattern also carries what is known about its length
for the whole batch (``may_be_empty``, ``may_be_single``, ``may_be_multi``), so that the
algebra skips selections for cases that cannot occur.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def le(a: Tensor, b: Tensor | float) -> Tensor:
    """Float mask of ``a <= b`` for integer-valued ``a``, ``b``."""
    return torch.clamp(b - a + 1, 0, 1)


def lt(a: Tensor, b: Tensor | float) -> Tensor:
    """Float mask of ``a < b`` for integer-valued ``a``, ``b``."""
    return torch.clamp(b - a, 0, 1)


def pick(mask: Tensor, a: Tensor | float, b: Tensor | float) -> Tensor:
    """``a`` where ``mask`` is 1, ``b`` where it is 0 (exact for finite values)."""
    if not isinstance(b, Tensor):
        b = torch.full_like(mask, b)
    if not isinstance(a, Tensor):
        a = torch.full_like(mask, a)
    return torch.lerp(b, a, mask)


def any_(mask: Tensor) -> bool:
    """Whether any element of a float mask is set."""
    return mask.numel() > 0 and bool(mask.max() > 0)


@dataclass(frozen=True, slots=True)
class Pattern:
    """A step sequence, summarised (tensor fields are ``[batch]``).

    Attributes:
        n: number of steps.
        c_first: compute cycles of the first step.
        c_last: compute cycles of the last step.
        ld_first: words the first step loads (moved before it starts).
        ld_second: words the second step loads (the first step's own load when ``n == 1``).
        st_last: words the last step stores (drained after it ends).
        st_penult: words the second-to-last step stores (the last's own when ``n == 1``).
        inner: summed durations of the steps strictly between the first and the last, which
            no neighbour outside the sequence can change.
        may_be_empty, may_be_single, may_be_multi: whether ``n == 0``, ``n == 1`` or
            ``n >= 2`` can occur anywhere in the batch.
    """

    n: Tensor
    c_first: Tensor
    c_last: Tensor
    ld_first: Tensor
    ld_second: Tensor
    st_last: Tensor
    st_penult: Tensor
    inner: Tensor
    may_be_empty: bool = False
    may_be_single: bool = True
    may_be_multi: bool = False


_TENSORS = ("n", "c_first", "c_last", "ld_first", "ld_second", "st_last", "st_penult", "inner")


def step(compute: Tensor, load: Tensor, store: Tensor) -> Pattern:
    """One step."""
    return Pattern(torch.ones_like(compute), compute, compute, load, load, store, store,
                   torch.zeros_like(compute))


def select(mask: Tensor, a: Pattern, b: Pattern) -> Pattern:
    """Per batch element: ``a`` where ``mask`` is 1, else ``b``."""
    return Pattern(*(torch.lerp(getattr(b, f), getattr(a, f), mask) for f in _TENSORS),
                   may_be_empty=a.may_be_empty or b.may_be_empty,
                   may_be_single=a.may_be_single or b.may_be_single,
                   may_be_multi=a.may_be_multi or b.may_be_multi)


def optional(p: Pattern, present: Tensor) -> Pattern:
    """``p`` where the mask ``present`` is 1, else the empty pattern."""
    return Pattern(p.n * present, p.c_first, p.c_last, p.ld_first, p.ld_second, p.st_last,
                   p.st_penult, p.inner, may_be_empty=True, may_be_single=p.may_be_single,
                   may_be_multi=p.may_be_multi)


def _multi(n: Tensor) -> Tensor:
    """Mask of ``n >= 2``."""
    return torch.clamp(n - 1, 0, 1)


class Algebra:
    """Concatenation and repetition of patterns on a channel of ``bandwidth`` words/cycle
    (a ``[batch]`` tensor, ``inf`` for unlimited)."""

    def __init__(self, bandwidth: Tensor) -> None:
        self.bandwidth = bandwidth

    def t(self, words: Tensor) -> Tensor:
        """Cycles to move ``words`` (:func:`hw_sim.schedule.transfer_cycles`)."""
        return torch.ceil(words / self.bandwidth)

    def _duration(self, compute: Tensor, words: Tensor) -> Tensor:
        return torch.maximum(compute, self.t(words))

    def steps(self, compute: Tensor, load: Tensor, store: Tensor, count: Tensor, *,
              may_be_empty: bool = True, may_be_multi: bool = True) -> Pattern:
        """``count`` identical steps (each middle one's transfers are its own load and store).

        ``may_be_empty`` / ``may_be_multi``: whether ``count`` can be 0 / at least 2.
        """
        inner = torch.zeros_like(compute)
        if may_be_multi:
            inner = torch.clamp(count - 2, min=0) * self._duration(compute, load + store)
        return Pattern(count, compute, compute, load, load, store, store, inner,
                       may_be_empty=may_be_empty, may_be_single=True, may_be_multi=may_be_multi)

    def concat(self, a: Pattern, b: Pattern) -> Pattern:
        """``a`` followed by ``b``."""
        # Masks only where a part may be a single step as well as several.
        a_multi = _multi(a.n) if a.may_be_multi and a.may_be_single else None
        b_multi = _multi(b.n) if b.may_be_multi and b.may_be_single else None
        inner = a.inner + b.inner
        # a's last step becomes interior: its next load is b's first load.
        if a.may_be_multi:
            tail = self._duration(a.c_last, b.ld_first + a.st_penult)
            inner = inner + (tail if a_multi is None else tail * a_multi)
        # b's first step becomes interior: its previous store is a's last store.
        if b.may_be_multi:
            head = self._duration(b.c_first, b.ld_second + a.st_last)
            inner = inner + (head if b_multi is None else head * b_multi)
        if a_multi is None:
            ld_second = a.ld_second if a.may_be_multi else b.ld_first
        else:
            ld_second = torch.lerp(b.ld_first, a.ld_second, a_multi)
        if b_multi is None:
            st_penult = b.st_penult if b.may_be_multi else a.st_last
        else:
            st_penult = torch.lerp(a.st_last, b.st_penult, b_multi)
        joined = Pattern(a.n + b.n, a.c_first, b.c_last, a.ld_first, ld_second, b.st_last,
                         st_penult, inner, may_be_empty=a.may_be_empty and b.may_be_empty,
                         may_be_single=(a.may_be_single and b.may_be_empty)
                         or (b.may_be_single and a.may_be_empty),
                         may_be_multi=True)
        if b.may_be_empty:
            joined = select(torch.clamp(1 - b.n, 0, 1), a, joined)
        if a.may_be_empty:
            joined = select(torch.clamp(1 - a.n, 0, 1), b, joined)
        return joined

    def repeat(self, p: Pattern, count: Tensor, *, may_be_zero: bool = True) -> Pattern:
        """``count`` back-to-back copies of ``p``; ``may_be_zero``: whether ``count`` can be 0
        (``p`` itself must not be empty where ``count > 0``)."""
        out = None
        if p.may_be_multi:
            seams = torch.clamp(count - 1, min=0) * (
                self._duration(p.c_last, p.ld_first + p.st_penult)
                + self._duration(p.c_first, p.ld_second + p.st_last))
            out = Pattern(p.n * count, p.c_first, p.c_last, p.ld_first, p.ld_second, p.st_last,
                          p.st_penult, p.inner * count + seams, may_be_empty=may_be_zero,
                          may_be_single=p.may_be_single, may_be_multi=True)
        if p.may_be_single:
            # Copies of one step: the middle ones move their own load and store.
            middle = torch.clamp(count - 2, min=0) * self._duration(
                p.c_first, p.ld_first + p.st_last)
            single = Pattern(count, p.c_first, p.c_last, p.ld_first, p.ld_first, p.st_last,
                             p.st_last, middle, may_be_empty=may_be_zero, may_be_single=True,
                             may_be_multi=True)
            out = single if out is None else select(le(p.n, 1), single, out)
        assert out is not None
        if may_be_zero:  # zero copies: no steps and no interior time
            present = torch.clamp(count, 0, 1)
            out = Pattern(out.n * present, out.c_first, out.c_last, out.ld_first, out.ld_second,
                          out.st_last, out.st_penult, out.inner * present, may_be_empty=True,
                          may_be_single=out.may_be_single, may_be_multi=True)
        return out

    def add_first_load(self, p: Pattern, words: Tensor) -> Pattern:
        """``p`` with ``words`` more loaded before its first step."""
        ld_first = p.ld_first + words
        ld_second = p.ld_second
        if p.may_be_single:
            ld_second = ld_first if not p.may_be_multi else torch.lerp(ld_first, ld_second,
                                                                        _multi(p.n))
        return Pattern(p.n, p.c_first, p.c_last, ld_first, ld_second, p.st_last, p.st_penult,
                       p.inner, may_be_empty=p.may_be_empty, may_be_single=p.may_be_single,
                       may_be_multi=p.may_be_multi)

    def occupancy(self, p: Pattern) -> Tensor:
        """Cycles from the first load to the last store of the non-empty ``p`` run alone:
        :func:`hw_sim.schedule.memory_timeline`'s ``occupancy_cycles``."""
        ends = self.t(p.ld_first) + self.t(p.st_last)
        if not p.may_be_multi:
            return ends + p.c_first
        multi = (self._duration(p.c_first, p.ld_second) + p.inner
                 + self._duration(p.c_last, p.st_penult))
        if p.may_be_single:
            multi = torch.lerp(p.c_first, multi, _multi(p.n))
        return ends + multi
