"""Expected hardware cost of a supernet's architecture distribution, exactly and
differentiably.

Choices are independent across layers, and a trunk layer's cost depends only on its own
choices and on its input shape (the *state*: channels and spatial size), which depends on the
earlier layers' choices.  So the expected cost is exact by forward propagation of the state
distribution (a small Markov chain over shapes)::

    P_0          = one-hot(observation shape)
    E[cost_i]    = sum_{s, op, w, f} P_i(s) p_op p_w p_f cost_i(s, op, w, f)
    P_{i+1}(s')  = sum_{s, op, w} P_i(s) p_op p_w [T_i(s, op, w) = s']   (skip keeps s)
    E[head]      = sum_{s, w, f} P_L(s) p_w p_f cost_head(s, w, f) + E[policy + value]

:class:`CandidateTable` enumerates, once per (space, observation), every hardware layer any
path can run (:class:`hw_sim.workload.Conv2d` / ``Linear`` with its weight format).  A cost
model prices those layers in one batch (``layer_costs[j]`` for ``table.layers[j]``, a torch
vector that may itself carry gradients, e.g. to accelerator logits), and
:meth:`CandidateTable.expected` contracts it with the choice probabilities.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from hw_sim.workload import Conv2d, Linear
from nas.arch import KERNEL_OF_OP, Arch, ArchWeightFormat, HeadSpec, LayerSpec, PlannedLayer
from nas.space import SearchSpace

State = tuple[int, ...]  # (C, H, W) or (features,)
LayerCost = Callable[[Sequence[Conv2d | Linear]], torch.Tensor]


@dataclass(frozen=True)
class _Position:
    """Index tensors of one trunk position."""

    states: tuple[State, ...]  # input states, in order
    # cost_index[s, op, w, f]: indices into table.layers summed for that candidate (-1: none)
    cost_index: torch.Tensor  # long [S, O, W, F, 2]  (dwsep runs two layers)
    # next_state[s, op, w]: index of the output state in the next position's states
    next_state: torch.Tensor  # long [S, O, W]


class CandidateTable:
    """Every hardware layer of every path through a search space, indexed for expectation.

    Args:
        space: the search space.
        obs_shape: observation shape.
        action_dim: policy outputs.
        batch: inferences per run (1: one environment step).
        balanced_masks: 1xN layers priced with row-balanced random masks (as
            :meth:`nas.arch.Arch.workload` says; the training prunes row_balanced).
    """

    def __init__(self, space: SearchSpace, obs_shape: tuple[int, ...], action_dim: int,
                 batch: int = 1, *, balanced_masks: bool = False):
        space.check_fits(obs_shape)
        self.space = space
        self.obs_shape = tuple(obs_shape)
        self.choices = space.choices(obs_shape)
        self.layers: list[Conv2d | Linear] = []
        self._index: dict[tuple[object, ...], int] = {}
        formats = {f.label(): f for f in (*space.formats, *space.head_formats)}
        self.positions: list[_Position] = []
        states: list[State] = [self.obs_shape]
        for i in range(space.num_layers):
            ops = self.choices[f"layers.{i}.op"]
            widths = self.choices[f"layers.{i}.width"]
            fmts = [formats[label] for label in self.choices[f"layers.{i}.format"]]
            next_states: list[State] = []
            cost_index = torch.full((len(states), len(ops), len(widths), len(fmts), 2), -1)
            next_index = torch.zeros((len(states), len(ops), len(widths)), dtype=torch.long)
            for s, state in enumerate(states):
                for o, op in enumerate(ops):
                    for w, width in enumerate(widths):
                        out = state if op == "skip" else self._out_state(i, state, op, width)
                        if out not in next_states:
                            next_states.append(out)
                        next_index[s, o, w] = next_states.index(out)
                        if op == "skip":
                            continue
                        for f, fmt in enumerate(fmts):
                            spec = LayerSpec(op=op, width=width, weight_format=fmt,
                                             padding=space.layer_padding(i)
                                             if space.observation == "pixels" else "valid")
                            for slot, layer in enumerate(_hw_layers(spec, state, batch,
                                                                       balanced_masks)):
                                cost_index[s, o, w, f, slot] = self._add(layer)
            self.positions.append(_Position(tuple(states), cost_index, next_index))
            states = next_states
        self.head_states = tuple(states)
        head_widths = self.choices["head.width"]
        head_fmts = [formats[label] for label in self.choices["head.format"]]
        self.head_index = torch.full((len(states), len(head_widths), len(head_fmts)), -1)
        for s, state in enumerate(states):
            features = 1
            for d in state:
                features *= d
            for w, width in enumerate(head_widths):
                for f, fmt in enumerate(head_fmts):
                    self.head_index[s, w, f] = self._add(_linear("head", features, width, fmt,
                                                                 batch, balanced_masks))
        self.output_index = torch.tensor([
            [self._add(Linear(name="policy", in_features=width, out_features=action_dim,
                              batch=batch)),
             self._add(Linear(name="value", in_features=width, out_features=1, batch=batch))]
            for width in head_widths])

    def _out_state(self, i: int, state: State, op: str, width: int) -> State:
        if op == "linear":
            return (width,)
        kernel = KERNEL_OF_OP[op]
        pad = kernel // 2 if self.space.layer_padding(i) == "same" else 0
        _, h, w = state
        return (width, h + 2 * pad - kernel + 1, w + 2 * pad - kernel + 1)

    def _add(self, layer: Conv2d | Linear) -> int:
        key = layer.model_dump_json(exclude={"name"})
        if key not in self._index:
            self._index[key] = len(self.layers)
            self.layers.append(layer)
        return self._index[key]

    # -- expectation -------------------------------------------------------------------

    def expected(self, probabilities: dict[str, torch.Tensor],
                 layer_costs: torch.Tensor) -> torch.Tensor:
        """Expected total cost of a path drawn from ``probabilities``.

        Args:
            probabilities: per choice label, a distribution over its candidates (as
                :meth:`nas.supernet.SuperNet.probabilities` gives; differentiable).
            layer_costs: ``[len(self.layers)]`` cost of each layer (any additive unit:
                cycles, seconds, pJ).

        Returns:
            A scalar tensor with gradients to the probabilities and the costs.
        """
        padded = torch.cat([layer_costs, layer_costs.new_zeros(1)])  # index -1 -> 0
        state = layer_costs.new_ones(1)
        total = layer_costs.new_zeros(())
        for i, pos in enumerate(self.positions):
            p_op = probabilities[f"layers.{i}.op"]
            p_w = probabilities[f"layers.{i}.width"]
            p_f = probabilities[f"layers.{i}.format"]
            cost = padded[pos.cost_index].sum(dim=-1)  # [S, O, W, F]
            total = total + torch.einsum("s,o,w,f,sowf->", state, p_op, p_w, p_f, cost)
            n_next = int(pos.next_state.max()) + 1
            move = torch.nn.functional.one_hot(pos.next_state, n_next).to(state.dtype)
            state = torch.einsum("s,o,w,sown->n", state, p_op, p_w, move)
        p_w = probabilities["head.width"]
        p_f = probabilities["head.format"]
        total = total + torch.einsum("s,w,f,swf->", state, p_w, p_f, padded[self.head_index])
        return total + torch.einsum("w,w->", p_w, padded[self.output_index].sum(dim=-1))

    def path_cost(self, indices: dict[str, int], layer_costs: torch.Tensor) -> torch.Tensor:
        """Cost of one path (candidate index per label): the expectation under one-hot
        distributions."""
        one_hot = {label: torch.nn.functional.one_hot(
            torch.tensor(index), len(self.choices[label])).to(layer_costs.dtype)
            for label, index in indices.items()}
        return self.expected(one_hot, layer_costs)


def _linear(name: str, features: int, width: int, fmt: ArchWeightFormat,
            batch: int, balanced_masks: bool) -> Linear:
    layer = PlannedLayer(name=name, kind="linear", in_shape=(features,), out_shape=(width,),
                         kernel=1, stride=1, padding=0, groups=1, weight_format=fmt)
    return layer.hw_layer(batch, balanced_masks=balanced_masks)  # type: ignore[return-value]


def _hw_layers(spec: LayerSpec, state: State, batch: int,
               balanced_masks: bool) -> list[Conv2d | Linear]:
    """The hardware layers of one trunk layer on an input of shape ``state`` (1xN layers
    priced at their target density, as :meth:`nas.arch.Arch.workload` does)."""
    planned = Arch(layers=(spec,), head=HeadSpec(width=8)).plan(state)[:-1]  # drop the head
    return [p.hw_layer(batch, balanced_masks=balanced_masks) for p in planned]
