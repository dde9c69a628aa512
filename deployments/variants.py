"""The A/B variants an ingress routes to: each a translator + speaker pair and the Pipeline over them.

A stage is called through its Ray Serve handle, or, in a colocated graph, on an in-process replica
(variants with the same stage config share one). Both answer expected errors as values; the
orchestrator (graph.pipeline) raises them.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

from ray.serve.handle import DeploymentHandle

from deployments.speaker import SpeakerReplica
from deployments.translator import TranslatorReplica
from graph.config import Limits
from graph.pipeline import Pipeline


class StageCalls:
    """A stage's methods, called through a handle (the result a DeploymentResponse, which the speaker
    can take unawaited so Ray starts the speech where it runs) or on an in-process replica."""

    def __init__(self, target: DeploymentHandle | TranslatorReplica | SpeakerReplica) -> None:
        self.target = target
        self.local = not isinstance(target, DeploymentHandle)

    def call(self, method: str, *args: Any) -> Awaitable[Any]:
        if not self.local:
            return getattr(self.target, method).remote(*args)  # type: ignore[no-any-return]
        out = getattr(self.target, method)(*args)
        return out if inspect.isawaitable(out) else _done(out)  # graph.pipeline starts coroutines as tasks

    def translate(self, text: str, source_lang: str, target_lang: str) -> Awaitable[Any]:
        return self.call("translate", text, source_lang, target_lang)

    def translate_stream(self, text: str, source_lang: str, target_lang: str) -> AsyncIterator[Any]:
        """The translation's pieces, then its record; through a handle, a Ray Serve streaming call."""
        target: Any = self.target
        if self.local:
            return target.translate_stream(text, source_lang, target_lang)  # type: ignore[no-any-return]
        return target.options(stream=True).translate_stream.remote(text, source_lang, target_lang)  # type: ignore[no-any-return]

    def speak(self, item: Any, lang: str, voice: str | None, speed: float) -> Awaitable[Any]:
        return self.call("speak", item, lang, voice, speed)


def _done(value: Any) -> Awaitable[Any]:
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    fut.set_result(value)
    return fut


@dataclass
class Variant:
    """One translator + speaker combination that requests can be routed to."""

    name: str
    info: dict[str, Any]
    tr: StageCalls
    sp: StageCalls
    pipeline: Pipeline


def build_variants(limits: Limits, src: str, tgt: str, variants: list[dict[str, Any]]) -> dict[str, Variant]:
    """The ingress's variants, from ``deployments.app.ingress_args``: handles, or stage configs to run here."""
    max_chars = limits.max_chars
    local: dict[str, TranslatorReplica | SpeakerReplica] = {}

    def stage(v: dict[str, Any], role: str) -> StageCalls:
        handle = v.get(role)
        if handle is not None:
            return StageCalls(handle)
        config = v.get(f"{role}_stage")
        if config is None:
            raise ValueError(f"variant {v['name']!r} has neither a {role} handle nor a {role}_stage")
        key = role + json.dumps(config, sort_keys=True, default=str)
        if key not in local:
            if role == "translator":
                local[key] = TranslatorReplica(config, max_chars, src, tgt)
            else:
                local[key] = SpeakerReplica(config, max_chars, tgt)
        return StageCalls(local[key])

    out: dict[str, Variant] = {}
    for v in variants:
        tr, sp = stage(v, "translator"), stage(v, "speaker")
        pipe = Pipeline(
            tr, sp, source_lang=src, target_lang=tgt, max_chars=max_chars, timeout_s=limits.request_timeout_s
        )
        out[v["name"]] = Variant(v["name"], v["graph"], tr, sp, pipe)
    return out
