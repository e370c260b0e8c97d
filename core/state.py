"""Explicit streaming state: a nested dict of tensors, batch first.

Every leaf resets to zero, so one generic routine resets rows of any streaming
module. Streaming steps update the state in place (`write`), so a session's row
can live in a preallocated slot: joining resets it, a step may run on a view of
the first rows, and the other rows' tensors are never touched.
"""
from __future__ import annotations

from typing import Callable, Iterator, Union

import torch

State = dict[str, Union[torch.Tensor, "State"]]


def map_state(state: State, fn: Callable[[torch.Tensor], torch.Tensor]) -> State:
    return {k: map_state(v, fn) if isinstance(v, dict) else fn(v) for k, v in state.items()}


def write(state: State, key: str, value: torch.Tensor) -> None:
    """Set a state entry: in place while streaming, so a row keeps its preallocated storage and a view of some
    rows (a step over fewer rows than allocated) writes through; by replacement when autograd needs the old
    value (training)."""
    if torch.is_grad_enabled():
        state[key] = value
    else:
        state[key].copy_(value)


def reset_rows(state: State, mask: torch.Tensor) -> None:
    """Zero, in place, the rows of every leaf where `mask` (bool, [B]) is true."""
    for value in state.values():
        if isinstance(value, dict):
            reset_rows(value, mask)
        else:
            value[mask.to(value.device)] = 0


def leaves(state: State) -> Iterator[torch.Tensor]:
    for value in state.values():
        if isinstance(value, dict):
            yield from leaves(value)
        else:
            yield value
