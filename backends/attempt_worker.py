"""``AttemptWorker``: one backend's calls on a thread of their own, so a caller can give up waiting.

The fallback chain (``backends.fallback_chain``) runs every attempt that has a timeout here: a hung
call is abandoned, not killed, and the next call on the same backend waits behind it on this thread
rather than running beside it. Plain Python, no Ray.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from backends.errors import BackendTimeout

R = TypeVar("R")


class AttemptWorker:
    """A daemon thread that runs one backend's calls, so a caller can stop waiting for one.

    Calls come one at a time (the chain holds the backend's busy lock until a call returns),
    so one thread per backend suffices and no call queues behind a hung one. A daemon
    thread, not an executor's: an abandoned call must not hold up the process's exit.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        threading.Thread(target=self._loop, name=f"hayaku-attempt-{name}", daemon=True).start()

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    def submit(self, fn: Callable[[], R], done: Callable[[], None]) -> Future[R]:
        """Queues ``fn()``; ``done`` runs when it ends (however late), before its future settles."""
        fut: Future[R] = Future()

        def job() -> None:
            try:
                result = fn()
            except BaseException as exc:  # handed to whoever waits on the future
                done()
                _settle(fut, error=exc)
            else:
                done()
                _settle(fut, result=result)

        self._jobs.put(job)
        return fut

    def call(self, fn: Callable[[], R], timeout_s: float | None, done: Callable[[], None]) -> R:
        """``fn()`` on the worker, waiting at most ``timeout_s`` in this thread."""
        try:
            return self.submit(fn, done).result(timeout_s)
        except FutureTimeout:
            raise self._timeout(timeout_s) from None

    async def acall(self, fn: Callable[[], R], timeout_s: float | None, done: Callable[[], None]) -> R:
        """``fn()`` on the worker, awaited at most ``timeout_s``: the event loop's only thread hop."""
        # shield: a timeout must not cancel a job that has not started, or ``done`` would never run.
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(self.submit(fn, done))), timeout_s)
        except asyncio.TimeoutError:
            raise self._timeout(timeout_s) from None

    def _timeout(self, timeout_s: float | None) -> BackendTimeout:
        return BackendTimeout(f"{self.name} did not answer within {timeout_s:g} s (attempt_timeout_s)")

    def stop(self) -> None:
        self._jobs.put(None)


def _settle(fut: Future[R], *, result: Any = None, error: BaseException | None = None) -> None:
    if fut.cancelled():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)
