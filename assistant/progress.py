"""A minimal progress bar on stderr for long CLI work (no extra dependency)."""
from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], total: int, label: str, enabled: bool | None = None) -> Iterator[T]:
    """Yield items while drawing `label [#####.....] n/total, elapsed` when stderr is a terminal."""
    show = sys.stderr.isatty() if enabled is None else enabled
    start = time.perf_counter()
    done = 0
    for item in items:
        yield item
        done += 1
        if show:
            filled = int(30 * done / max(total, 1))
            sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} "
                             f"{time.perf_counter() - start:.1f}s")
            sys.stderr.flush()
    if show:
        sys.stderr.write("\n")
