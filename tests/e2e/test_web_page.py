"""The web page at `/` in headless Chromium, against `serve run` of the tiny graph (echo + tone).

A person's steps: open the page, pick a voice, type three sentences, press Enter; the streamed
sentences play, the translation and timings appear, the whole speech lands in the <audio>
element. The audio the page built is read back out of the browser and decoded here.
"""

from __future__ import annotations

import base64
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

# Sibling e2e module (pytest puts this folder on sys.path): one way to run `serve run` on a free port.
from test_serve_run import _config, _start, _stop

from backends.audio import decode_wav, rms
from tests.conftest import free_port

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the web page test drives Chromium with Playwright: pip install 'hayaku[test]'"
)

START_TIMEOUT_S = 180
MAX_CHARS = 300
KEY_ENV, API_KEY = "HAYAKU_WEB_TEST_KEY", "web-test-key"
SENTENCES = ["Hello, how are you today?", "The weather is lovely.", "Let us go for a walk."]
#: the echo translator puts this before each sentence, so the page has Japanese to draw
JA_PREFIX = "日本語訳："
CHROMIUM_ARGS = [
    "--no-sandbox",  # as root, Chromium refuses to start with its sandbox
    "--autoplay-policy=no-user-gesture-required",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("Debian's chromium binary is not installed: apt-get install -y chromium (scripts/setup.sh does it)")
    return found


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`serve run` of configs/tiny.yaml on a free port with an API key, a small max_chars and a second
    variant, never picked at random, whose speaker fails every second call (forced with ?variant=faulty)."""
    _chromium()  # skip before paying for a graph start
    tmp = tmp_path_factory.mktemp("web")
    port = free_port()
    limits = {"max_chars": MAX_CHARS, "max_body_bytes": 65536, "request_timeout_s": 30}
    faulty = {"backend": "tone", "voice": "sine", "options": {"fault": "raise", "fault_every": 2}}
    variants = [{"name": "main", "weight": 1}, {"name": "faulty", "weight": 0, "speaker": faulty}]
    log = tmp / "serve.log"
    translator = {"backend": "echo", "options": {"prefix": JA_PREFIX}}
    config = _config(
        tmp, port, translator=translator, limits=limits, variants=variants, security={"api_key_env": KEY_ENV}
    )
    with pytest.MonkeyPatch.context() as env:  # the ingress replica reads the key from serve run's environment
        env.setenv(KEY_ENV, API_KEY)
        proc = _start(config, log)
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {API_KEY}"}
    try:
        # Not /healthz: the faulty variant makes it 503 on purpose. /v1/graph answers once every stage runs.
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, f"serve run exited early:\n{log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{base}/v1/graph", headers=auth, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"no /v1/graph within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield base
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, base_url: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page at ``/`` plus the query string a test marks with ``@pytest.mark.parametrize("query", ...)``."""
    ctx = browser.new_context(viewport={"width": 1100, "height": 900})
    pg = ctx.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    pg.goto(f"{base_url}/{getattr(request, 'param', '')}")
    try:
        yield pg
    finally:
        ctx.close()
    assert not problems, problems


def _sign_in(pg: Any) -> None:
    """Enters the API key the page asks for (GET /v1/graph answered 401); the voices load then."""
    key = pg.get_by_label("API key")
    key.wait_for(state="visible", timeout=10_000)
    key.fill(API_KEY)
    key.press("Tab")
    pg.wait_for_function("window.hayaku.voices.length > 0", timeout=10_000)


def _finished(pg: Any, timeout_ms: int = 30_000) -> dict[str, Any]:
    pg.wait_for_function("['done', 'error'].includes(window.hayaku.state)", timeout=timeout_ms)
    state: dict[str, Any] = pg.evaluate("({...window.hayaku})")
    return state


def _assert_japanese_drawn(pg: Any) -> None:
    """Each translation is visible, and Chromium drew its Japanese with a font that has the glyphs:
    without one (no CJK font installed) the same text is drawn as empty boxes by a Latin font."""
    translations = pg.locator("#sentences .ja")
    assert translations.count() == len(SENTENCES)
    cdp = pg.context.new_cdp_session(pg)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    nodes = cdp.send("DOM.querySelectorAll", {"nodeId": root, "selector": "#sentences .ja"})["nodeIds"]
    for i, node in enumerate(nodes):
        assert translations.nth(i).is_visible() and translations.nth(i).inner_text() == JA_PREFIX + SENTENCES[i]
        fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
        cjk = sum(f["glyphCount"] for f in fonts if "CJK" in f["familyName"])
        assert cjk >= len(JA_PREFIX), f"Japanese drawn without a CJK font ({fonts}): apt-get install fonts-noto-cjk"


def test_type_speak_hear(page: Any, artifacts: Path) -> None:
    assert page.title().startswith("hayaku")
    _sign_in(page)
    # The voice list comes from GET /v1/graph (speaker.live.voices).
    assert page.eval_on_selector_all("#voice option", "os => os.map(o => o.value)") == ["", "sine", "square"]
    page.get_by_label("Voice").select_option("square")
    page.get_by_label("English text").fill(" ".join(SENTENCES))
    page.get_by_label("English text").press("Enter")

    h = _finished(page)
    assert h["state"] == "done", f"the page ended in {h['state']}: {h['error']}; {page.inner_text('#error')}"
    assert h["error"] is None and page.inner_text("#error") == ""
    # One streamed line per sentence, in order, each played (its audio decoded and scheduled).
    assert h["chunks"] == len(SENTENCES)
    assert [s["index"] for s in h["sentences"]] == list(range(len(SENTENCES)))
    assert [s["translation"] for s in h["sentences"]] == [JA_PREFIX + s for s in SENTENCES]  # echo translator
    assert h["clientFirstAudioMs"] is not None and h["clientFirstAudioMs"] > 0
    shown = page.inner_text("#sentences")
    for s in SENTENCES:
        assert JA_PREFIX + s in shown
    _assert_japanese_drawn(page)
    assert all(s["timings_ms"]["since_start"] > 0 for s in h["sentences"])
    assert "translate" in shown and "synthesize" in shown

    # Timings and who served, from the done line and the X-Hayaku-Variant header.
    assert 0 < h["firstAudioMs"] <= h["totalMs"]
    assert "ms server" in page.inner_text("#first-audio") and "ms server" in page.inner_text("#total")
    assert h["variant"] == h["headerVariant"] == "main"
    assert page.inner_text("#variant") == h["variant"]
    assert h["translator"]["backend"] == "echo" and page.inner_text("#translator").startswith("echo")
    assert h["speaker"] == {"backend": "tone", "voice": "square"}
    assert page.inner_text("#speaker") == "tone · square"

    # The whole speech is in the <audio> element: read its blob back and decode it.
    assert h["audioBytes"] > 44 and h["audioDuration"] > 0
    assert page.eval_on_selector("#audio", "a => a.src") == h["audioUrl"]
    wav_b64 = page.evaluate(
        """async (url) => {
            const bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
            let s = ""; for (const b of bytes) s += String.fromCharCode(b);
            return btoa(s);
        }""",
        h["audioUrl"],
    )
    samples, rate = decode_wav(base64.b64decode(wav_b64))
    assert rate == 24000 and rms(samples) > 0.05
    assert abs(len(samples) / rate - h["audioDuration"]) < 0.01
    page.screenshot(path=str(artifacts / "web_page.png"), full_page=True)


def test_api_key_is_asked_for(page: Any) -> None:
    page.get_by_label("API key").wait_for(state="visible", timeout=10_000)
    page.get_by_label("English text").fill("Hello there.")
    page.get_by_role("button", name="Speak").click()
    h = _finished(page)
    assert h["state"] == "error" and h["error"]["type"] == "unauthorized", h
    assert "API key" in page.get_by_role("alert").inner_text()
    assert page.evaluate("document.activeElement.id") == "key"
    page.get_by_label("API key").fill(API_KEY)
    page.get_by_label("API key").press("Enter")  # Enter in the key field speaks too
    page.wait_for_function("window.hayaku.state !== 'error'", timeout=5_000)
    h = _finished(page)
    assert h["state"] == "done" and h["chunks"] == 1 and h["error"] is None, h
    assert page.get_by_role("alert").inner_text() == ""


def test_bad_request_is_shown(page: Any, artifacts: Path) -> None:
    _sign_in(page)
    page.get_by_label("English text").fill("x" * (MAX_CHARS + 1))
    page.get_by_role("button", name="Speak").click()
    h = _finished(page)
    assert h["state"] == "error" and h["chunks"] == 0
    assert h["error"]["type"] == "invalid_request"
    alert = page.get_by_role("alert").inner_text()
    assert f"max_chars={MAX_CHARS}" in alert, alert
    assert h["headerVariant"], "even an error response says which variant it went to"
    page.screenshot(path=str(artifacts / "web_page_error.png"), full_page=True)


@pytest.mark.parametrize("page", ["?variant=faulty"], indirect=True)
def test_stage_failure_is_shown(page: Any) -> None:
    # Four sentences, a speaker that fails every second call: the failure reaches the page either as
    # a 503 before the first audio or as an error line after some sentences (calls race to the replica).
    text = "One is here. Two is here. Three is here. Four is here."
    _sign_in(page)
    page.get_by_label("English text").fill(text)
    page.get_by_label("English text").press("Enter")
    h = _finished(page)
    assert h["state"] == "error", h
    assert h["headerVariant"] == "faulty"  # the page passes its query string on, so ?variant= forces one
    assert h["error"]["type"] == "injected_fault", h["error"]
    assert "injected_fault" in page.get_by_role("alert").inner_text()
    assert h["chunks"] < 4
    if h["chunks"]:  # the sentences that did arrive stay playable
        assert h["audioBytes"] > 44 and h["audioDuration"] > 0
