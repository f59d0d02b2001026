"""A progress bar on standard error: tqdm when installed, plain lines otherwise."""

import sys
from typing import Iterable, Iterator, Optional, TypeVar

__all__ = ["Steps", "progress"]

T = TypeVar("T")


def _tqdm():
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


def progress(
    items: Iterable[T], total: int, description: str, enabled: bool = True
) -> Iterator[T]:
    """Iterate over ``items`` while showing progress on standard error."""
    if not enabled:
        yield from items
        return
    tqdm = _tqdm()
    if tqdm is not None:
        yield from tqdm(items, total=total, desc=description, file=sys.stderr)
        return
    for index, item in enumerate(items):
        print(f"{description}: {index + 1}/{total}", file=sys.stderr, flush=True)
        yield item


class Steps:
    """Named stages of one run (neighbours, tuning, ...) shown as one bar."""

    def __init__(self, names, enabled: bool = True):
        self.names = list(names)
        self.enabled = enabled
        self._bar = None
        self._done = 0
        tqdm = _tqdm() if enabled else None
        if tqdm is not None:
            self._bar = tqdm(total=len(self.names), file=sys.stderr, leave=False)

    def start(self, name: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_description(name)
        else:
            print(
                f"[{self._done + 1}/{len(self.names)}] {name}",
                file=sys.stderr,
                flush=True,
            )

    def finish(self) -> None:
        self._done += 1
        if self._bar is not None:
            self._bar.update(1)

    def close(self, note: Optional[str] = None) -> None:
        if self._bar is not None:
            self._bar.close()
        if note and self.enabled:
            print(note, file=sys.stderr)
