"""The base of every stage's config dataclass: JSON round trip, copies, and named presets."""
from __future__ import annotations

import json
from dataclasses import asdict, fields, replace
from typing import Any, Mapping, Self, TypeVar

T = TypeVar("T")


class JsonConfig:
    """JSON round trip and copies for the frozen config dataclasses (codec, LM, vision)."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})  # JSON lists -> tuples

    def with_(self, **changes: Any) -> Self:
        return replace(self, **changes)


def named(presets: Mapping[str, T], name: str, kind: str) -> T:
    """presets[name], or a ValueError that lists the choices."""
    try:
        return presets[name]
    except KeyError:
        raise ValueError(f"unknown {kind} preset {name!r}; choose from {', '.join(presets)}") from None
