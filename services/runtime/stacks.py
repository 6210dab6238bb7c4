"""On SIGUSR1 a service logs where each of its asyncio tasks is waiting: the way to see a task stuck on an await.

Thread dumps (py-spy) show only the event loop's own frames; a stalled coroutine shows up here instead. Only file,
line, function and the source line are written, never a frame's variables: a task may be holding personal data.
"""

import asyncio
import logging
import signal
import traceback
from types import FrameType

log = logging.getLogger(__name__)


def task_stacks() -> str:
    """Describe every task of the running loop with the frames it is suspended in, innermost last."""
    described = []
    for task in sorted(asyncio.all_tasks(), key=lambda t: t.get_name()):
        where = "".join(traceback.StackSummary.extract(iter(_frames(task))).format())
        described.append(f"task {task.get_name()} ({task.get_coro().__qualname__}):\n{where or '  (no frames)'}")
    return "\n".join(described)


def _frames(task: asyncio.Task) -> list[tuple[FrameType, int]]:
    # Task.get_stack stops at the task's own coroutine (a suspended frame has no f_back): follow the await chain
    # (cr_await) down to the future the innermost coroutine waits on, each frame at the line it is suspended at.
    found, awaiting = [], task.get_coro()
    while awaiting is not None:
        frame = getattr(awaiting, "cr_frame", None) or getattr(awaiting, "ag_frame", None) or getattr(awaiting, "gi_frame", None)
        if frame is None:
            break
        found.append((frame, frame.f_lineno))
        awaiting = getattr(awaiting, "cr_await", None) or getattr(awaiting, "ag_await", None) or getattr(awaiting, "gi_yieldfrom", None)
    return found


def log_task_stacks() -> None:
    """Write every task's stack to the log at WARNING, so it shows at any log level an operator runs with."""
    log.warning("asyncio tasks on SIGUSR1:\n%s", task_stacks())


def dump_stacks_on_signal() -> None:
    """Log the tasks' stacks whenever the process receives SIGUSR1 (`kill -USR1 <pid>`); call from the running loop."""
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, log_task_stacks)
