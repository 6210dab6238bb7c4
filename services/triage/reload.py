"""Hot reload: a new ruleset version is validated and swapped in between batches; a bad one never is."""

import asyncio
import hashlib
import logging
from pathlib import Path

from services.triage.grading import Grader
from services.triage.metrics import TriageMetrics
from services.triage.ruleset import RulesetError, parse_ruleset

log = logging.getLogger(__name__)


class RulesHolder:
    """Holds the grader in use; handlers read `grader` once per batch, so a swap never splits a batch."""

    def __init__(self, grader: Grader, metrics: TriageMetrics):
        self.grader = grader
        self._metrics = metrics
        self._digest = _digest(grader.ruleset.source_text)
        metrics.ruleset_active.labels(grader.version).set(1)

    def offer(self, text: str, origin: str) -> bool:
        """Validate a ruleset and swap it in; return False, log and count when it is rejected or unchanged."""
        digest = _digest(text)
        if digest == self._digest:
            return False
        try:
            ruleset = parse_ruleset(text)
            if ruleset.version == self.grader.version:
                raise RulesetError(f"file: version: content changed but version {ruleset.version!r} did not")
            grader = Grader(ruleset)
        except RulesetError as error:
            self._metrics.ruleset_reloads.labels("rejected", origin).inc()
            log.error("rejected ruleset from %s, keeping %s: %s", origin, self.grader.version, error)
            return False
        previous, self.grader, self._digest = self.grader, grader, digest
        self._metrics.ruleset_active.labels(previous.version).set(0)
        self._metrics.ruleset_active.labels(grader.version).set(1)
        self._metrics.ruleset_reloads.labels("accepted", origin).inc()
        log.info("ruleset %s replaces %s (from %s)", grader.version, previous.version, origin)
        return True


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def watch_file(holder: RulesHolder, path: Path, every: float) -> None:
    """Offer the rules file whenever its content changes; a rejected content is not offered again until it changes."""
    last = None
    while True:
        await asyncio.sleep(every)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            log.warning("cannot read rules file %s: %s", path, error.strerror)
            continue
        if text != last:
            last = text
            holder.offer(text, "file")
