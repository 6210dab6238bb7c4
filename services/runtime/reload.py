"""Versioned configuration swapped at runtime: validated first, a bad version never replaces a good one."""

import asyncio
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)

T = TypeVar("T")


class Reloadable(Generic[T]):
    """Holds the version in use; readers take `current` once per batch, so a swap never splits a batch.

    `screen(text, running_version, proof)` may refuse a text with ValueError before it is built; the running
    version is None for the first text, and `proof` is whatever came with the text (a signature), else None.
    With `reasons`, the reloads counter has a third label, `reason`: the `reason` attribute of the refusal
    (`invalid` when it has none), empty for an accepted version.
    """

    def __init__(
        self,
        what: str,
        text: str,
        build: Callable[[str], T],
        version_of: Callable[[T], str],
        active: Gauge,
        reloads: Counter,
        screen: Callable[[str, str | None, Any], None] | None = None,
        proof: Any = None,
        reasons: bool = False,
    ):
        self.what = what
        # Cheap checks run before build, which may be expensive or hold memory for good (e.g. a compile).
        self._screen = screen or (lambda _text, _running, _proof: None)
        self._build = build
        self._version_of = version_of
        self._active = active
        self._reloads = reloads
        self._reasons = reasons
        self._screen(text, None, proof)
        self.current = build(text)
        self._digest = _digest(text)
        active.labels(self.version).set(1)

    @property
    def version(self) -> str:
        """Return the version in use."""
        return self._version_of(self.current)

    def offer(self, text: str, origin: str, proof: Any = None) -> bool:
        """Validate a new version and swap it in; return False, log and count when rejected or unchanged."""
        digest = _digest(text)
        if digest == self._digest:
            return False
        try:
            self._screen(text, self.version, proof)
            candidate = self._build(text)
            if self._version_of(candidate) == self.version:
                raise ValueError(f"version: content changed but version {self.version!r} did not")
        except ValueError as error:
            self._count("rejected", origin, getattr(error, "reason", "invalid"))
            # The message only: a record holding the error would hold its traceback and so the offered text.
            log.error("rejected %s from %s, keeping %s: %s", self.what, origin, self.version, str(error))
            return False
        previous = self.version
        self.current, self._digest = candidate, digest
        self._active.labels(previous).set(0)
        self._active.labels(self.version).set(1)
        self._count("accepted", origin, "")
        log.info("%s %s replaces %s (from %s)", self.what, self.version, previous, origin)
        return True

    def _count(self, result: str, origin: str, reason: str) -> None:
        self._reloads.labels(result, origin, *([reason] if self._reasons else [])).inc()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def read_text(path: Path) -> tuple[str, None]:
    """Return a file's text and no proof."""
    return path.read_text(encoding="utf-8"), None


async def watch_file(holder: Reloadable, path: Path, every: float, read: Callable[[Path], tuple[str, Any]] = read_text) -> None:
    """Offer the file whenever its content or proof changes; a rejected pair is not offered again until one changes."""
    last = None
    while True:
        await asyncio.sleep(every)
        try:
            text, proof = read(path)
        except OSError as error:
            log.warning("cannot read %s: %s", path, error.strerror)
            continue
        if (text, proof) != last:
            last = (text, proof)
            holder.offer(text, "file", proof)
