"""Explicit streaming state: a nested dict of tensors, batch first.

Every leaf resets to zero, so one generic routine resets, selects or joins
rows of any streaming module. A session leaving resets (or drops) its row and
leaves the other rows' tensors untouched.
"""
from __future__ import annotations

from typing import Callable, Iterator, Union

import torch

State = dict[str, Union[torch.Tensor, "State"]]


def map_state(state: State, fn: Callable[[torch.Tensor], torch.Tensor]) -> State:
    return {k: map_state(v, fn) if isinstance(v, dict) else fn(v) for k, v in state.items()}


def reset_rows(state: State, mask: torch.Tensor) -> None:
    """Zero, in place, the rows of every leaf where `mask` (bool, [B]) is true."""
    for value in state.values():
        if isinstance(value, dict):
            reset_rows(value, mask)
        else:
            value[mask.to(value.device)] = 0


def select_rows(state: State, rows: torch.Tensor | list[int]) -> State:
    index = torch.as_tensor(rows, dtype=torch.long)
    return map_state(state, lambda t: t.index_select(0, index.to(t.device)))


def cat_rows(states: list[State]) -> State:
    """Join the rows of several states (same module, same structure)."""
    first = states[0]
    return {
        k: cat_rows([s[k] for s in states]) if isinstance(v, dict) else torch.cat([s[k] for s in states])
        for k, v in first.items()
    }


def leaves(state: State) -> Iterator[torch.Tensor]:
    for value in state.values():
        if isinstance(value, dict):
            yield from leaves(value)
        else:
            yield value


def batch_size(state: State) -> int:
    return next(leaves(state)).shape[0]
