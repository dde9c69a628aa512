"""The fallback chain behind ``backends.fallback``: backends tried in order, health states, probing.

``FallbackChain.call`` sends a call to the first healthy backend; a failure (exception, attempt
timeout, garbage judged by the caller's check) marks that backend unhealthy with its reason and
moves on. Attempts with a timeout run on one ``AttemptWorker`` thread per backend, so an abandoned
call never runs beside the next one on the same backend. Plain Python, no Ray.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from backends.attempt_worker import AttemptWorker
from backends.base import Backend
from backends.errors import BackendTimeout, BackendUnavailable, HayakuError, InvalidRequest

log = logging.getLogger("hayaku.fallback")

B = TypeVar("B", bound=Backend)
R = TypeVar("R")


@dataclass
class BackendState:
    """What the chain knows about one of its backends."""

    label: str
    healthy: bool = True
    reason: str | None = None
    since: float = field(default_factory=time.time)
    failures: int = 0
    served: int = 0
    timed_out: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.label,
            "state": "healthy" if self.healthy else "unhealthy",
            "reason": self.reason,
            "since": self.since,
            "for_s": round(time.time() - self.since, 3),
            "failures": self.failures,
            "served": self.served,
        }


class _Failed(Exception):
    """One attempt failed; ``reason`` is what the chain records."""

    def __init__(self, reason: str, *, timed_out: bool = False, invalid: InvalidRequest | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out
        self.invalid = invalid


class _Run:
    """The failures one call met, turned into its error when no backend served."""

    def __init__(self, chain: FallbackChain[Any]) -> None:
        self.chain = chain
        self.tried: dict[int, str] = {}
        self.invalid: list[InvalidRequest] = []

    def failed(self, i: int, failure: _Failed) -> None:
        if failure.invalid is not None:
            if i == 0:
                raise failure.invalid from None
            self.invalid.append(failure.invalid)
        self.tried[i] = failure.reason

    def error(self) -> HayakuError:
        if self.invalid and len(self.invalid) == len(self.tried):  # every backend that tried says it is bad
            return self.invalid[0]
        states = self.chain.states
        for i, s in enumerate(states):
            self.tried.setdefault(i, f"unhealthy for {_ago(s.since)}: {s.reason}")
        detail = "; ".join(f"{states[i].label}: {why}" for i, why in sorted(self.tried.items()))
        return BackendUnavailable(f"every backend failed ({len(states)}): {detail}")


class FallbackChain(Generic[B]):
    """The health bookkeeping and the try-in-order policy over a list of loaded backends.

    ``probe(backend)`` makes one tiny real call; ``garbage(result)`` returns why a result is
    unusable, or None. Each backend takes one call at a time (not every engine is
    thread-safe), so an abandoned hung call keeps its backend out of service, probes
    included, until it returns.
    """

    def __init__(
        self,
        backends: Sequence[B],
        *,
        probe: Callable[[B], Any],
        garbage: Callable[[Any], str | None],
        attempt_timeout_s: float | None = None,
        probe_interval_s: float = 10.0,
    ) -> None:
        if not backends:
            raise ValueError("a fallback chain needs at least one backend")
        self.backends = list(backends)
        self.states = [BackendState(label) for label in _labels(self.backends)]
        self.attempt_timeout_s = attempt_timeout_s
        self.probe_interval_s = probe_interval_s
        self._probe = probe
        self._garbage = garbage
        self._busy = [threading.Lock() for _ in self.backends]
        self._workers: dict[int, AttemptWorker] = {}
        self._state_lock = threading.Lock()
        self._stop = threading.Event()
        self._prober: threading.Thread | None = None

    # -- calls ---------------------------------------------------------------------------

    def call(self, fn: Callable[[B], R]) -> tuple[R, int]:
        """``fn`` on the first backend that serves; returns the result and that backend's index.

        Healthy backends are tried in order; if none serves, the unhealthy ones whose own
        health check passes and that did not hang get one more try (a failing call is cheap
        to retry, a hung one is not). The primary's InvalidRequest is the caller's mistake
        and is raised as is; a fallback's only skips that fallback.
        """
        run = _Run(self)
        for i, wait in self._order():
            try:
                result = self._attempt(i, fn, wait=wait)
            except _Failed as failure:
                run.failed(i, failure)
                continue
            self._served(i)
            return result, i
        raise run.error()

    async def acall(self, fn: Callable[[B], R]) -> tuple[R, int]:
        """``call`` for an event loop: a blocking backend runs on its attempt worker, awaited.

        Nothing here blocks the loop: a busy backend is skipped rather than waited for (a
        replica sends one call at a time anyway).
        """
        run = _Run(self)
        for i, _ in self._order():
            try:
                backend = self._admit(i, wait=False)
                try:
                    if backend.blocking:  # even without a timeout: the loop must never run it
                        job = functools.partial(fn, backend)
                        result = await self._worker(i).acall(job, self.attempt_timeout_s, self._busy[i].release)
                    else:
                        result = self._inline(i, fn)
                except Exception as exc:
                    raise self._failed(i, exc) from None
                result = self._accept(i, result)
            except _Failed as failure:
                run.failed(i, failure)
                continue
            self._served(i)
            return result, i
        raise run.error()

    def _order(self) -> list[tuple[int, bool]]:
        """(index, wait for its busy lock): healthy backends, then the last resorts (never waited for)."""
        healthy = [(i, True) for i, s in enumerate(self.states) if s.healthy]
        return healthy + [(i, False) for i, s in enumerate(self.states) if not s.healthy and not s.timed_out]

    def _attempt(self, i: int, fn: Callable[[B], R], *, wait: bool) -> R:
        """One blocking call on backend ``i`` with its health check, timeout and garbage check; raises _Failed."""
        backend = self._admit(i, wait=wait)
        try:
            if self._offload(i):
                result = self._worker(i).call(lambda: fn(backend), self.attempt_timeout_s, self._busy[i].release)
            else:
                result = self._inline(i, fn)
        except Exception as exc:
            raise self._failed(i, exc) from None
        return self._accept(i, result)

    def _admit(self, i: int, *, wait: bool) -> B:
        """Backend ``i`` if its health check passes and it is free (its busy lock is then held); raises _Failed."""
        backend, timeout = self.backends[i], self.attempt_timeout_s
        try:
            health = backend.health()
        except Exception as exc:
            health = {"ok": False, "reason": f"health() raised {type(exc).__name__}: {exc}"}
        if not health.get("ok"):
            self._mark_unhealthy(i, f"health check failed: {health.get('reason') or health}")
            raise _Failed(self.states[i].reason or "health check failed")
        busy = self._busy[i]
        if not (busy.acquire(timeout=timeout if timeout is not None else -1) if wait else busy.acquire(False)):
            raise _Failed("busy: an earlier call has not returned")
        return backend

    def _offload(self, i: int) -> bool:
        # Non-blocking backends answer in microseconds by contract: no thread hop, no timeout.
        return self.attempt_timeout_s is not None and self.backends[i].blocking

    def _inline(self, i: int, fn: Callable[[B], R]) -> R:
        try:
            return fn(self.backends[i])
        finally:
            self._busy[i].release()

    def _failed(self, i: int, exc: Exception) -> _Failed:
        """Records a call's exception (InvalidRequest marks nothing) and says what to report."""
        if isinstance(exc, InvalidRequest):
            return _Failed(f"rejected the request: {exc}", invalid=exc)
        if isinstance(exc, BackendTimeout):
            self._mark_unhealthy(i, str(exc), timed_out=True)
            return _Failed(str(exc), timed_out=True)
        self._mark_unhealthy(i, f"{type(exc).__name__}: {exc}")
        return _Failed(self.states[i].reason or str(exc))

    def _accept(self, i: int, result: R) -> R:
        bad = self._garbage(result)
        if bad:
            self._mark_unhealthy(i, f"garbage: {bad}")
            raise _Failed(f"garbage: {bad}")
        return result

    def _worker(self, i: int) -> AttemptWorker:
        with self._state_lock:
            if i not in self._workers:
                self._workers[i] = AttemptWorker(self.states[i].label)
            return self._workers[i]

    def fallback_from(self) -> dict[str, str]:
        """The primary and why it did not serve, for a result a fallback served."""
        primary = self.states[0]
        return {"backend": primary.label, "reason": primary.reason or "unhealthy"}

    # -- state ---------------------------------------------------------------------------

    def _served(self, i: int) -> None:
        with self._state_lock:
            state = self.states[i]
            state.served += 1
            if not state.healthy:
                self._restore(i, "served a request")

    def _mark_unhealthy(self, i: int, reason: str, *, timed_out: bool = False) -> None:
        with self._state_lock:
            state = self.states[i]
            state.failures += 1
            state.reason = reason
            # A hang stays on record until the backend is restored: it must not be retried as a last resort.
            state.timed_out = timed_out or (state.timed_out and not state.healthy)
            if state.healthy:
                state.healthy, state.since = False, time.time()
                log.warning("%s marked unhealthy: %s", state.label, reason)
        self._start_prober()

    def _restore(self, i: int, why: str) -> None:
        state = self.states[i]
        log.info("%s restored (%s) after %s unhealthy: %s", state.label, why, _ago(state.since), state.reason)
        state.healthy, state.timed_out, state.since = True, False, time.time()
        state.reason = None

    def warm_up(self) -> None:
        """Probes every backend once, so a failing one is known (and a fallback warm) before traffic."""
        for i in range(len(self.backends)):
            self._probe_one(i)

    def probe_unhealthy(self) -> None:
        """Probes each unhealthy backend once (health + one tiny call); those that pass are restored."""
        for i, state in enumerate(self.states):
            if not state.healthy:
                self._probe_one(i)

    def _probe_one(self, i: int) -> bool:
        try:
            self._attempt(i, self._probe, wait=False)
        except _Failed as failure:
            if failure.invalid is not None:  # a probe the backend cannot take says nothing about its health
                log.warning("probe of %s rejected: %s", self.states[i].label, failure.reason)
            return False
        with self._state_lock:
            if not self.states[i].healthy:
                self._restore(i, "probe passed")
        return True

    def _start_prober(self) -> None:
        with self._state_lock:
            if self._prober is not None or self._stop.is_set():
                return
            self._prober = threading.Thread(target=self._probe_loop, name="hayaku-fallback-probe", daemon=True)
            self._prober.start()

    def _probe_loop(self) -> None:
        while not self._stop.wait(self.probe_interval_s):
            try:
                self.probe_unhealthy()
            except Exception:  # the prober must outlive any one bad probe
                log.exception("fallback probe failed")

    def close(self) -> None:
        """Stops the prober and the attempt workers, and closes every backend."""
        self._stop.set()
        for worker in self._workers.values():
            worker.stop()  # a worker stuck in a hung call ends with the process (daemon)
        for backend in self.backends:
            backend.close()

    def report(self) -> list[dict[str, Any]]:
        """Each backend's state (healthy/unhealthy, reason, since), in chain order."""
        with self._state_lock:
            return [s.to_dict() for s in self.states]

    def health(self) -> dict[str, Any]:
        """ok while any backend is healthy; ``degraded`` when the primary is out."""
        report = self.report()
        serving = next((r["backend"] for r in report if r["state"] == "healthy"), None)
        return {
            "ok": serving is not None,
            "degraded": report[0]["state"] != "healthy",
            "serving": serving,
            "backends": report,
        }

    def describe(self) -> dict[str, Any]:
        return {
            "attempt_timeout_s": self.attempt_timeout_s,
            "probe_interval_s": self.probe_interval_s,
            "backends": [{**b.describe(), **s} for b, s in zip(self.backends, self.report(), strict=True)],
        }


def _labels(backends: Sequence[Backend]) -> list[str]:
    """Backend names, made unique with '#n' (a chain may hold one backend twice with other options)."""
    labels: list[str] = []
    for i, b in enumerate(backends):
        labels.append(b.name if b.name not in labels else f"{b.name}#{i}")
    return labels


def _ago(since: float) -> str:
    return f"{time.time() - since:.1f} s"
