"""Security defaults in a plain process: API key, CORS, log redaction, loopback binding, the CLI warning.

The app is hayaku's own ``create_app()`` (all its middlewares) with a few routes of the test's;
the same middleware runs behind Ray Serve in tests/integration/test_security_http.py.
"""

from __future__ import annotations

import ast
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import FastAPI, WebSocket
from fastapi.responses import JSONResponse
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from deployments.http.app import create_app
from deployments.http.errors import error_response
from deployments.http.redaction import install_log_redaction
from deployments.http.schemas import TranslateRequest
from deployments.http.security import UNAUTHORIZED, WS_POLICY_VIOLATION, configure_security
from graph.config import ConfigError, parse_args
from graph.yaml_files import exposure_warning, is_loopback
from serve import cli

ROOT = Path(__file__).resolve().parents[2]
KEY = "k3y-0f-the-test"
SECRET_TEXT = "my secret sentence about the merger"


def _app(section: dict[str, Any] | None = None, configure: bool = True) -> FastAPI:
    app = create_app()

    @app.post("/v1/translate")
    async def translate(body: TranslateRequest) -> JSONResponse:
        return JSONResponse({"translation": body.text})

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/")
    async def page() -> JSONResponse:
        return JSONResponse({"page": True})

    @app.get("/v1/boom")
    async def boom() -> JSONResponse:
        try:
            raise ValueError(f"cannot handle {SECRET_TEXT!r}")
        except ValueError as exc:
            return error_response(exc, "rid-1")

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_json({"type": "hello"})
        await ws.close()

    if configure:
        configure_security(app, section)
    return app


@pytest.fixture(autouse=True)
def _reset_log_setting() -> Iterator[None]:
    yield
    install_log_redaction(False)


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("HAYAKU_API_KEY", KEY)
    return TestClient(_app())


def test_without_a_key_everything_is_open_and_cors_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HAYAKU_API_KEY", raising=False)
    c = TestClient(_app())
    r = c.post("/v1/translate", json={"text": "hi"}, headers={"origin": "https://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    assert c.get("/openapi.json").status_code == 200
    pre = c.options(
        "/v1/translate", headers={"origin": "https://evil.example", "access-control-request-method": "POST"}
    )
    assert "access-control-allow-origin" not in pre.headers


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong"},
        {"authorization": f"Basic {KEY}"},
        {"authorization": KEY},
        {"authorization": f"Bearer {KEY}x"},
        {"authorization": f"Bearer {KEY[:-1]}"},
        {"x-api-key": "wrong"},
        {"x-api-key": ""},
        {"authorization": "Bearer "},
    ],
)
def test_a_missing_or_wrong_key_is_one_401(keyed: TestClient, headers: dict[str, str]) -> None:
    r = keyed.post("/v1/translate", json={"text": "hi"}, headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    body = r.json()
    # The same words whatever failed: nothing says whether the header, the scheme or the key was wrong.
    assert body["error"] == {"type": "unauthorized", "message": UNAUTHORIZED}
    assert KEY not in r.text


@pytest.mark.parametrize(
    "headers", [{"authorization": f"Bearer {KEY}"}, {"authorization": f"bearer  {KEY} "}, {"x-api-key": KEY}]
)
def test_the_right_key_passes(keyed: TestClient, headers: dict[str, str]) -> None:
    r = keyed.post("/v1/translate", json={"text": "hi"}, headers=headers)
    assert r.status_code == 200 and r.json() == {"translation": "hi"}


def test_public_routes_and_protected_docs(keyed: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    assert keyed.get("/healthz").status_code == 200
    assert keyed.get("/").status_code == 200  # the page: its own JS sends the key
    for path in ("/docs", "/openapi.json", "/redoc", "/v1/nope", "/healthz/", "/healthz/x"):
        assert keyed.get(path).status_code == 401, path  # unknown routes too: no probing which exist
    assert keyed.get("/openapi.json", headers={"x-api-key": KEY}).status_code == 200
    monkeypatch.setenv("HAYAKU_API_KEY", KEY)
    docs = TestClient(_app({"public_docs": True}))
    assert docs.get("/docs").status_code == 200 and docs.get("/openapi.json").status_code == 200
    assert docs.post("/v1/translate", json={"text": "hi"}).status_code == 401


def test_the_key_is_checked_before_the_body_is_read(keyed: TestClient) -> None:
    big = b'{"text": "' + b"a" * 3_000_000 + b'"}'  # over max_body_bytes: 413 for a caller with the key
    r = keyed.post("/v1/translate", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 401
    r = keyed.post("/v1/translate", content=big, headers={"content-type": "application/json", "x-api-key": KEY})
    assert r.status_code == 413


def test_the_prefix_serve_mounts_the_app_under_is_not_part_of_the_route(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAYAKU_API_KEY", KEY)
    c = TestClient(_app(), root_path="/tiny")
    assert c.get("/tiny/healthz").status_code == 200
    assert c.post("/tiny/v1/translate", json={"text": "hi"}).status_code == 401


def test_websocket_without_the_key_is_closed_1008_before_accept(keyed: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as exc, keyed.websocket_connect("/v1/stream"):
        pass
    assert exc.value.code == WS_POLICY_VIOLATION == 1008
    with keyed.websocket_connect("/v1/stream", headers={"authorization": f"Bearer {KEY}"}) as ws:
        assert ws.receive_json() == {"type": "hello"}


def test_an_app_nobody_configured_still_takes_the_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAYAKU_API_KEY", KEY)
    c = TestClient(_app(configure=False))
    assert c.post("/v1/translate", json={"text": "hi"}).status_code == 401
    assert c.post("/v1/translate", json={"text": "hi"}, headers={"x-api-key": KEY}).status_code == 200


def test_another_variable_and_fail_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HAYAKU_API_KEY", raising=False)
    monkeypatch.setenv("MY_KEY", "other")
    c = TestClient(_app({"api_key_env": "MY_KEY"}))
    assert c.post("/v1/translate", json={"text": "hi"}).status_code == 401
    assert c.post("/v1/translate", json={"text": "hi"}, headers={"x-api-key": "other"}).status_code == 200
    with pytest.raises(ConfigError, match=r"security\.require_api_key: the environment variable NOPE_KEY is unset"):
        _app({"api_key_env": "NOPE_KEY", "require_api_key": True})


def test_cors_opens_only_to_the_configured_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAYAKU_API_KEY", KEY)
    c = TestClient(_app({"cors_origins": ["https://app.example"]}))
    pre = c.options(
        "/v1/translate",
        headers={
            "origin": "https://app.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
    )
    # the preflight carries no credentials: CORS answers it before the key check
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "https://app.example"
    assert "authorization" in pre.headers["access-control-allow-headers"].lower()
    ok = c.post("/v1/translate", json={"text": "hi"}, headers={"origin": "https://app.example", "x-api-key": KEY})
    assert ok.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-request-id" in ok.headers["access-control-expose-headers"].lower()
    # a 401 keeps its CORS headers, so the page can read why
    denied = c.post("/v1/translate", json={"text": "hi"}, headers={"origin": "https://app.example"})
    assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == "https://app.example"
    other = c.post("/v1/translate", json={"text": "hi"}, headers={"origin": "https://evil.example", "x-api-key": KEY})
    assert "access-control-allow-origin" not in other.headers
    bad_pre = c.options(
        "/v1/translate", headers={"origin": "https://evil.example", "access-control-request-method": "POST"}
    )
    assert "access-control-allow-origin" not in bad_pre.headers


def test_openapi_documents_the_error_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HAYAKU_API_KEY", raising=False)
    spec = TestClient(_app()).get("/openapi.json").json()
    post = spec["paths"]["/v1/translate"]["post"]["responses"]
    for code in ("400", "401", "413", "422", "503"):
        assert post[code]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert "401" not in spec["paths"]["/healthz"]["get"]["responses"]


# -- logs -------------------------------------------------------------------------------------------


def _boom_log(c: TestClient, caplog: pytest.LogCaptureFixture) -> str:
    caplog.clear()
    r = c.get("/v1/boom")
    assert r.status_code == 500 and SECRET_TEXT not in r.text
    return caplog.text


def test_logs_withhold_exception_messages(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HAYAKU_API_KEY", raising=False)
    caplog.set_level(logging.INFO, logger="hayaku.http")
    c = TestClient(_app())
    text = _boom_log(c, caplog)
    assert "request rid-1 failed with a bug" in text and "ValueError" in text
    assert "test_security.py" in text  # the frames stay
    assert SECRET_TEXT not in text and f"withheld: {len(f'cannot handle {SECRET_TEXT!r}')} characters" in text


def test_logs_quote_text_with_log_request_text_or_debug(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HAYAKU_API_KEY", raising=False)
    caplog.set_level(logging.INFO, logger="hayaku.http")
    assert SECRET_TEXT in _boom_log(TestClient(_app({"log_request_text": True})), caplog)
    install_log_redaction(False)
    caplog.set_level(logging.DEBUG, logger="hayaku.http")
    assert SECRET_TEXT in _boom_log(TestClient(_app()), caplog)


def test_ray_serve_records_are_redacted_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # Ray Serve logs "Request failed." with the traceback of whatever a replica method raised.
    monkeypatch.delenv("HAYAKU_API_KEY", raising=False)
    _app()
    logger = logging.getLogger("ray.serve")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    try:
        try:
            raise RuntimeError(f"failed on {SECRET_TEXT}")
        except RuntimeError:
            logger.exception("Request failed.")
    finally:
        logger.removeHandler(handler)
    assert "Request failed." in stream.getvalue() and "RuntimeError" in stream.getvalue()
    assert SECRET_TEXT not in stream.getvalue()


SENSITIVE = {"text", "texts", "body", "sentence", "sentences", "translation", "source", "item", "spoken", "piece"}
LOG_METHODS = {"info", "warning", "error", "exception", "critical"}


def _quoted_names(node: ast.AST) -> set[str]:
    """Names used in a log call's arguments, except inside len() (a length is fine to log)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len":
        return set()
    found = {node.id} if isinstance(node, ast.Name) else set()
    if isinstance(node, ast.Attribute) and node.attr in SENSITIVE:
        found.add(node.attr)
    for child in ast.iter_child_nodes(node):
        found |= _quoted_names(child)
    return found


def test_no_log_call_above_debug_quotes_request_text() -> None:
    offenders = []
    for folder in ("backends", "deployments", "serve"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                target = node.func.value
                if node.func.attr not in LOG_METHODS or not (
                    isinstance(target, ast.Name) and target.id in ("log", "logger", "logging")
                ):
                    continue
                names = set().union(*(_quoted_names(a) for a in [*node.args, *(k.value for k in node.keywords)]))
                if names & SENSITIVE:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} logs {sorted(names & SENSITIVE)}")
    assert not offenders, "log lengths or ids, not request text:\n" + "\n".join(offenders)


# -- config, binding, CLI ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("security", "needle"),
    [
        ({"api_key_env": "A-B"}, "args.security.api_key_env: String should match pattern"),
        ({"cors_origins": "https://a.example"}, "args.security.cors_origins: Input should be a valid list"),
        ({"log_request_text": "sometimes"}, "args.security.log_request_text: Input should be a valid boolean"),
        ({"api_key": "inline-secret"}, "args.security.api_key: unknown option (got 'inline-secret')"),
    ],
)
def test_bad_security_sections_name_their_field(security: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_args({"translator": {"backend": "echo"}, "speaker": {"backend": "tone"}, "security": security})
    assert needle in str(exc.value)


def test_the_ingress_gets_the_security_section() -> None:
    from graph.auto import resolve_graph

    args = {"translator": {"backend": "echo"}, "speaker": {"backend": "tone"}, "security": {"public_docs": True}}
    section = resolve_graph(args).to_dict()["security"]
    assert section["public_docs"] is True and section["api_key_env"] == "HAYAKU_API_KEY"
    assert section["cors_origins"] == [] and section["log_request_text"] is False


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_binds_loopback(config: Path) -> None:
    data = yaml.safe_load(config.read_text())
    host = (data.get("http_options") or {}).get("host")
    assert host is not None and is_loopback(host), f"{config.name}: http_options.host is {host!r}"
    assert exposure_warning(data, {}) is None


def test_loopback_and_the_exposure_warning() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.5", "example.com", ""))
    app = {"import_path": "serve.app:build", "args": {}}
    exposed = {"http_options": {"host": "0.0.0.0"}, "applications": [app]}
    warning = exposure_warning(exposed, {})
    assert warning and "'0.0.0.0'" in warning and "HAYAKU_API_KEY is not set" in warning
    assert exposure_warning(exposed, {"HAYAKU_API_KEY": "x"}) is None
    assert (
        exposure_warning(
            {**exposed, "applications": [{**app, "runtime_env": {"env_vars": {"HAYAKU_API_KEY": "x"}}}]}, {}
        )
        is None
    )
    custom = {**app, "args": {"security": {"api_key_env": "MINE"}}}
    assert "MINE is not set" in str(exposure_warning({**exposed, "applications": [custom]}, {"HAYAKU_API_KEY": "x"}))
    assert exposure_warning({"applications": [app]}, {}) is None  # Ray's default host is loopback
    assert exposure_warning({"applications": [app]}, {"RAY_SERVE_DEFAULT_HTTP_HOST": "0.0.0.0"})


def test_hayaku_serve_warns_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HAYAKU_API_KEY", raising=False)
    config = tmp_path / "open.yaml"
    bad = {"translator": {"backend": "echo", "options": {"num_beams": 3}}, "speaker": {"backend": "tone"}}
    config.write_text(
        yaml.safe_dump(
            {
                "http_options": {"host": "0.0.0.0", "port": 8000},
                "applications": [{"name": "a", "import_path": "serve.app:build", "args": bad}],
            }
        )
    )
    # The bad option stops it before `serve run`: the warning must come first, on stderr.
    assert cli.main(["serve", str(config)]) == 2
    err = capsys.readouterr().err
    assert "hayaku: warning: http_options.host is '0.0.0.0'" in err and "HAYAKU_API_KEY is not set" in err
    assert err.index("warning") < err.index("num_beams")
    monkeypatch.setenv("HAYAKU_API_KEY", KEY)
    assert cli.main(["serve", str(config)]) == 2
    assert "warning" not in capsys.readouterr().err
