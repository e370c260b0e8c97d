"""One live server per fuzz module (starting one per Hypothesis example would cost more than the examples)."""
from __future__ import annotations

from typing import Iterator

import pytest

from assistant.engine import Engine

from ..conftest import random_codec
from .live import LiveServer


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with LiveServer(Engine(random_codec(), max_sessions=2)) as live:
        yield live
