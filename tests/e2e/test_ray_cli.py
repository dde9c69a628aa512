"""Ray Serve's own CLI against the instance `serve run` started: `serve status`, `serve config`, and
`serve deploy` of a changed YAML, as subprocesses, with the setting Ray 2.60's token auth needs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

# Sibling e2e module (pytest puts this folder on sys.path): one way to run `serve run` on a free port.
from test_serve_run import START_TIMEOUT_S, _config, _start, _stop, _wait_healthy

from tests.conftest import free_port

SERVE = Path(sys.executable).with_name("serve")
#: Ray 2.60 runs the local instance of `serve run` with token auth; its CLI sends the token
#: (~/.ray/auth_token, written by that instance) only when told to
RAY_CLI_ENV = {"RAY_AUTH_MODE": "token"}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _cli(*args: str, auth: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    env.update(RAY_CLI_ENV if auth else {})
    return subprocess.run([str(SERVE), *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def _dashboard(log: Path) -> str:
    """The dashboard address `serve run` printed (8265, or the next free port when another Ray has it)."""
    found = re.search(r"View the dashboard at (\S+)", _ANSI.sub("", log.read_text(errors="replace")))
    address = found.group(1) if found else "127.0.0.1:8265"
    return address if address.startswith("http") else f"http://{address}"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """(HTTP base URL, dashboard URL, the YAML) of `serve run configs/tiny.yaml` on a free port."""
    tmp = tmp_path_factory.mktemp("ray_cli")
    port = free_port()
    config = _config(tmp, port)
    log = tmp / "serve.log"
    proc = _start(config, log)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(proc, log, base)
        yield base, _dashboard(log), config
    finally:
        _stop(proc)


def test_status_config_and_deploy(served: tuple[str, str, Path], tmp_path: Path) -> None:
    base, dashboard, config = served
    bare = _cli("status", "-a", dashboard, auth=False)
    if bare.returncode != 0:  # what a Ray user meets first; the README says what to set
        assert "authentication" in bare.stderr.lower(), bare.stderr[-2000:]

    status = _cli("status", "-a", dashboard)
    assert status.returncode == 0, status.stderr[-3000:]
    app = yaml.safe_load(status.stdout)["applications"]["hayaku"]
    assert app["status"] == "RUNNING" and set(app["deployments"]) == {"Ingress", "Translator", "Speaker"}

    shown = _cli("config", "-a", dashboard)
    assert shown.returncode == 0, shown.stderr[-3000:]
    running = yaml.safe_load(shown.stdout)
    assert running["name"] == "hayaku" and running["import_path"] == "serve.app:build"
    assert running["args"]["speaker"] == {"backend": "tone", "voice": "sine"}

    # A changed YAML sent to the running instance: the speaker's voice becomes square.
    changed = yaml.safe_load(config.read_text())
    changed["applications"][0]["args"]["speaker"]["voice"] = "square"
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(changed))
    deployed = _cli("deploy", str(path), "-a", dashboard)
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            r = httpx.post(f"{base}/v1/audio/speech", json={"input": "テスト", "response_format": "wav"}, timeout=10)
            if r.status_code == 200 and r.headers["x-hayaku-voice"] == "square":
                break
        except httpx.TransportError:
            pass  # the new replicas taking over
        assert time.monotonic() < deadline, "serve deploy's change never served"
        time.sleep(0.5)
    shown = _cli("config", "-a", dashboard)
    assert yaml.safe_load(shown.stdout)["args"]["speaker"]["voice"] == "square"
