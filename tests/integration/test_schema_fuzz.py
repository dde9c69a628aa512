"""schemathesis against the app's own OpenAPI spec, over real HTTP to a real Serve graph (echo + tone).

Every operation in the spec, with data that fits the schema and data that does not: never a
5xx, every status, content type, body and header as the spec documents it, invalid data
refused with a 4xx. The graph runs with an API key (given to the ingress replica through its
runtime_env), so the spec's 401 is checked too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from ray import serve

from benchmarks.hostile import budget, check

schemathesis = pytest.importorskip("schemathesis", reason="needs schemathesis: pip install 'hayaku[test]'")
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

KEY = "schema-fuzz-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
ARGS = {
    "translator": {"backend": "echo"},
    # short audio per character: schemathesis sends long strings, and the point is the answers, not the audio
    "speaker": {"backend": "tone", "voice": "sine", "options": {"seconds_per_char": 0.002}},
    "limits": {"max_chars": 2000, "max_body_bytes": 65536, "request_timeout_s": 30},
}
CONFORMS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
DEPTHS = [pytest.param("quick", id="quick"), pytest.param("long", id="long", marks=pytest.mark.slow)]
ROUTES = {"/v1/translate", "/v1/audio/speech", "/v1/speech-translate", "/v1/graph", "/v1/ab", "/healthz"}


@dataclass
class Api:
    base: str
    schema: Any


@pytest.fixture(scope="module")
def api(serve_port: int) -> Iterator[Api]:
    from deployments.app import graph_app
    from graph.auto import resolve_graph

    no_cpu = {"num_cpus": 0}
    over = {
        "Ingress": {"ray_actor_options": {**no_cpu, "runtime_env": {"env_vars": {"HAYAKU_API_KEY": KEY}}}},
        "Translator": {"ray_actor_options": no_cpu},
        "Speaker": {"ray_actor_options": no_cpu},
    }
    serve.run(graph_app(resolve_graph(ARGS), over), name="schema", route_prefix="/schema")
    base = f"http://127.0.0.1:{serve_port}/schema"
    try:
        yield Api(base, schemathesis.openapi.from_url(f"{base}/openapi.json", headers=AUTH, timeout=30))
    finally:
        serve.delete("schema")


def _operations(api: Api) -> list[Any]:
    ops = [result.ok() for result in api.schema.get_all_operations()]
    assert {op.path for op in ops} >= ROUTES, sorted(op.path for op in ops)
    return ops


def _has_input(op: Any) -> bool:
    return bool(op.body) or bool(op.query) or bool(op.headers) or bool(op.path_parameters)


@pytest.mark.parametrize("depth", DEPTHS)
def test_every_operation_answers_as_documented(api: Api, depth: str) -> None:
    for op in _operations(api):
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if _has_input(op) else [])
        for mode in modes:
            checks = CONFORMS + ([negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])

            def prop(case: Any, checks: list[Any] = checks) -> None:
                response = case.call(base_url=api.base, headers=AUTH, timeout=60)
                case.validate_response(response, checks=checks, headers=AUTH)

            examples = budget(12 if _has_input(op) else 2, depth)
            check(
                f"schema.{mode.value}.{op.method.upper()} {op.path}",
                op.as_strategy(generation_mode=mode),
                prop,
                examples,
            )


def test_every_operation_but_healthz_needs_the_key(api: Api) -> None:
    spec = httpx.get(f"{api.base}/openapi.json", headers=AUTH, timeout=30).json()
    with httpx.Client(base_url=api.base, timeout=30) as client:
        for op in _operations(api):
            r = client.request(op.method.upper(), op.path, json={} if op.method.upper() == "POST" else None)
            if op.path == "/healthz":
                assert r.status_code == 200, r.text
                continue
            assert r.status_code == 401, (op.path, r.status_code, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.json()["error"]["type"] == "unauthorized"
            assert "401" in spec["paths"][op.path][op.method.lower()]["responses"], op.path
        assert client.get("/openapi.json").status_code == 401 and client.get("/docs").status_code == 401
