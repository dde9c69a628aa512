"""`serve run configs/ab.yaml` with the offline models: two variants served, compared by GET /v1/ab.

Slow: it loads the bundled Qwen translator and both voices (prepare them with `hayaku models prepare`).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml
from test_serve_run import ROOT, _start, _stop, _wait_healthy

from backends.audio import decode_wav, rms
from tests.conftest import free_port

pytestmark = pytest.mark.slow
START_TIMEOUT_S = 600


def _ab_config(tmp_path: Path, port: int) -> Path:
    cfg = yaml.safe_load((ROOT / "configs" / "ab.yaml").read_text())
    cfg["http_options"] = {"host": "127.0.0.1", "port": port}
    path = tmp_path / "ab.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return path


def test_ab_yaml_serves_two_variants_and_compares_them(tmp_path: Path) -> None:
    from graph.yaml_files import load_app_args

    try:
        load_app_args(ROOT / "configs" / "ab.yaml")
        from graph.auto import resolve_graph

        resolve_graph(load_app_args(ROOT / "configs" / "ab.yaml")[0].args)
    except Exception as exc:
        pytest.skip(f"configs/ab.yaml cannot run here (offline models not prepared?): {exc}")
    port = free_port()
    log = tmp_path / "serve.log"
    proc = _start(_ab_config(tmp_path, port), log)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(proc, log, base, probe_timeout_s=5.0)
        from benchmarks.load import load

        texts = [{"text": t} for t in ("Hello, how are you today?", "Where is the station?", "Thank you very much.")]
        res = load(base, "/v1/speech-translate", texts, 2, max_requests=16, max_seconds=300, timeout_s=120)
        assert all(r.ok for r in res.records), [r.error for r in res.records if not r.ok]
        with httpx.Client(base_url=base, timeout=120) as c:
            rates = {}
            for v in ("openjtalk", "kokoro"):
                r = c.post(f"/v1/speech-translate?variant={v}", json={"text": "Good morning."})
                assert r.status_code == 200 and r.headers["x-hayaku-variant"] == v
                samples, rates[v] = decode_wav(r.content)
                assert rms(samples) > 0.01
            assert rates == {"openjtalk": 48000, "kokoro": 24000}, "each variant speaks with its own engine"
            lines = [
                json.loads(x)
                for x in c.post(
                    "/v1/speech-translate",
                    json={"text": "Good morning. The train leaves at nine.", "stream": True, "response": "json"},
                ).text.splitlines()
            ]
            assert [x["type"] for x in lines] == ["sentence", "sentence", "done"]
            assert all(
                any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in x["translation"])
                for x in lines[:2]
            ), lines
            report = c.get("/v1/ab").json()
        v = report["variants"]
        assert v["openjtalk"]["requests"] > 0 and v["kokoro"]["requests"] > 0
        assert v["openjtalk"]["errors"] == v["kokoro"]["errors"] == 0
        (cmp,) = report["comparisons"]
        assert cmp["a"] == "kokoro" and cmp["b"] == "openjtalk" and 0 <= cmp["p_value"] <= 1
    finally:
        _stop(proc)
