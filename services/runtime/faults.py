"""Named fault points: a test kills a service exactly at a pipeline boundary, as a crash would there.

`FENGQIAO_FAULT=<point>[:<n>]` (test-only) kills the process the n-th time (default 1) it reaches the point,
counted per process. The point is a boundary, reached by every pipeline of the service, or one pipeline's
boundary, `<pipeline>.<boundary>` (pipelines: triage `reports`; dispatch `triaged`, `updates`; follow-up
`events`, `timers`, `results`). The boundaries:

- `after_publish`: a batch's outputs are published and acknowledged, its effects not yet recorded;
- `after_record`: its effects are recorded and committed, its offsets not yet committed.

So `FENGQIAO_FAULT=after_publish:3` kills at the third batch published, `events.after_record` at the first
batch of follow-up's dispatch events recorded. The kill is `os._exit(137)` (a SIGKILL's exit code): no
shutdown hooks, no final commit, no flush. The environment is read once, at import; unset, a fault point
costs one comparison with a module constant.
"""

import os
import sys


def _parse(value: str) -> tuple[str | None, int]:
    """Split `<point>[:<n>]` into the point and the reach that kills; refuse a malformed value loudly."""
    if not value:
        return None, 0
    point, colon, count = value.partition(":")
    if not point or (colon and (not count.isdigit() or int(count) < 1)):
        raise ValueError(f"FENGQIAO_FAULT={value!r}: expected <point>[:<n>] with n >= 1")
    return point, int(count) if count else 1


_POINT, _AT = _parse(os.environ.get("FENGQIAO_FAULT", ""))
_reached = 0


def fault_point(boundary: str, pipeline: str) -> None:
    """Kill the process here if FENGQIAO_FAULT names this boundary and this is the reach it counts to."""
    if _POINT is None or _POINT not in (boundary, f"{pipeline}.{boundary}"):
        return
    global _reached
    _reached += 1
    if _reached >= _AT:
        # Written straight to the descriptor: the log shows why the process ended, and nothing is flushed.
        os.write(sys.stderr.fileno(), f"FENGQIAO_FAULT: killed at {pipeline}.{boundary} (reach {_reached})\n".encode())
        os._exit(137)
