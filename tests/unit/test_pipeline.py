"""The orchestrator (graph.pipeline) with in-process stages: order, deadline, cancellation, fallbacks,
timings, live sessions, and the sentence joining every route shares."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import numpy as np
import pytest

from backends import audio, registry
from backends.errors import BackendTimeout, InvalidRequest
from backends.text import complete_sentences
from backends.types import SpeechResult
from graph.pieces import CLAUSE_PAUSE_S, GAP_S
from graph.pipeline import Pipeline, local_pipeline
from graph.stages import SpeakStage, TranslateStage, build_speaker

PARAGRAPH = "Good morning. The train leaves at nine. Please keep your ticket. Have a nice trip."


def _echo_tone(translator: dict[str, Any] | None = None, speaker: dict[str, Any] | None = None, **kw: Any) -> Pipeline:
    tr = registry.create_translator("echo", options={"prefix": "JA:", **(translator or {})})
    sp = registry.create_speaker("tone", options=speaker or {})
    return local_pipeline(tr, sp, **kw)


def test_pieces_come_in_sentence_order_with_their_own_translation_and_speech() -> None:
    async def go() -> list[Any]:
        # work_ms makes each call take time, so later sentences are ready while earlier ones are read
        run = _echo_tone({"work_ms": 30}, {"work_ms": 30}).speech_translate(PARAGRAPH)
        return [p async for p in run]

    pieces = asyncio.run(go())
    sources = ["Good morning.", "The train leaves at nine.", "Please keep your ticket.", "Have a nice trip."]
    assert [p.index for p in pieces] == [0, 1, 2, 3]
    assert [p.source for p in pieces] == sources
    assert [p.text for p in pieces] == [f"JA:{s}" for s in sources]
    assert all(p.speech is not None and p.speech.text == p.text for p in pieces)
    assert [p.since_start_ms for p in pieces] == sorted(p.since_start_ms for p in pieces)


def test_whole_joins_with_one_gap_between_sentences_and_reports_first_audio() -> None:
    out = _echo_tone().run_sync("Hello there. How are you?")
    assert out.translation == "JA:Hello there.JA:How are you?"
    first, second = out.speech
    gap = int(first.sample_rate * GAP_S)
    assert len(out.samples) == len(first.audio) + gap + len(second.audio)
    assert not out.samples[len(first.audio) : len(first.audio) + gap].any()
    t = out.timings_ms
    assert {"translate", "synthesize", "first_audio", "total"} <= set(t)
    assert 0 < t["first_audio"] <= t["total"]


def test_a_request_past_its_deadline_is_a_backend_timeout_and_its_calls_are_cancelled() -> None:
    pipe = _echo_tone(speaker={"fault": "hang", "hang_s": 3}, timeout_s=0.3)

    async def go() -> Any:
        run = pipe.speech_translate("One. Two.")
        with pytest.raises(BackendTimeout) as exc:
            await run.whole()
        return run, exc.value

    run, err = asyncio.run(go())
    assert err.kind == "timeout" and "request_timeout_s=0.3" in str(err)  # the ingress answers it 503
    assert run.read == []  # nothing came back
    assert all(s.calls[-1].cancelled() for s in run._queue)  # the speech calls still running were stopped


def test_a_consumer_that_stops_early_cancels_the_remaining_sentences() -> None:
    async def go() -> Any:
        run = _echo_tone(speaker={"work_ms": 50}).speech_translate(PARAGRAPH)
        first = await run.__anext__()
        await run.aclose()
        return run, first

    run, first = asyncio.run(go())
    assert first.index == 0
    left = [s.calls[-1] for s in run._queue[1:]]
    assert left and all(sp.done() for sp in left)
    assert any(sp.cancelled() for sp in left)


def test_empty_or_oversized_text_is_refused_before_any_stage_call() -> None:
    pipe = _echo_tone(max_chars=20)
    with pytest.raises(InvalidRequest) as empty:
        pipe.run_sync("   ")
    with pytest.raises(InvalidRequest) as long:
        pipe.run_sync("x" * 21)
    assert (empty.value.status, long.value.status) == (400, 413)


def test_a_fallback_that_served_is_noted_once_per_role() -> None:
    speaker = build_speaker(
        {"backend": "tone", "options": {"fault": "raise"}, "fallbacks": [{"backend": "tone", "voice": "square"}]},
        2000,
        "ja",
    )
    pipe = Pipeline(
        TranslateStage(registry.create_translator("echo")), SpeakStage(speaker), source_lang="en", target_lang="ja"
    )
    pipe.translator.backend.load()  # type: ignore[union-attr]
    out = pipe.run_sync("One. Two.")
    assert len(out.fallbacks) == 1
    assert out.fallbacks[0].startswith("speaker: tone failed (") and out.fallbacks[0].endswith("tone served")
    assert all(sp.fallback_from is not None for sp in out.speech)


def test_speak_only_runs_have_no_translation() -> None:
    async def go() -> list[Any]:
        return [p async for p in _echo_tone().speak("こんにちは。元気ですか。")]

    pieces = asyncio.run(go())
    assert [p.source for p in pieces] == ["こんにちは。", "元気ですか。"]
    assert all(p.translation is None and p.speech is not None for p in pieces)


def test_translate_only_runs_join_the_translations() -> None:
    async def go() -> Any:
        return await _echo_tone().translate("Hello. Bye.").text()

    out = asyncio.run(go())
    assert out.translation == "JA:Hello.JA:Bye."
    assert [r.source_text for r in out.sentences] == ["Hello.", "Bye."]
    assert "translate" in out.timings_ms and "synthesize" not in out.timings_ms


def test_a_live_session_starts_each_sentence_when_it_is_complete() -> None:
    async def go() -> tuple[list[int], list[str]]:
        live = _echo_tone().live()
        started = [live.feed("Hello there. How"), live.feed(" are you"), live.feed("? Fine")]
        live.end()  # the unfinished rest is spoken too
        return started, [p.text async for p in live.run]

    started, texts = asyncio.run(go())
    assert started == [1, 0, 1]
    assert texts == ["JA:Hello there.", "JA:How are you?", "JA:Fine"]


def test_a_live_session_refuses_unfinished_text_over_max_chars() -> None:
    async def go() -> None:
        live = _echo_tone(max_chars=30).live()
        live.feed("no sentence end in this text at all, still going")

    with pytest.raises(InvalidRequest, match="max_chars=30"):
        asyncio.run(go())


@pytest.mark.parametrize(
    ("buffer", "flush", "done", "rest"),
    [
        ("Hello there. How are", False, ["Hello there."], "How are"),
        ("Hello there.", False, ["Hello there."], ""),
        ('He said "yes."', False, ['He said "yes."'], ""),
        ("no punctuation at all", False, [], "no punctuation at all"),
        ("no punctuation at all", True, ["no punctuation at all"], ""),
        ("こんにちは。元気", False, ["こんにちは。"], "元気"),
    ],
)
def test_complete_sentences(buffer: str, flush: bool, done: list[str], rest: str) -> None:
    lang = "ja" if "。" in buffer else "en"
    assert complete_sentences(buffer, lang, flush) == (done, rest)


def test_joined_puts_the_gap_before_every_sentence_but_the_first_at_one_rate() -> None:
    a = SpeechResult(np.full(100, 0.5, np.float32), 16000, "a", "ja", "v", "tone", {})
    b = SpeechResult(np.full(100, 0.5, np.float32), 8000, "b", "ja", "v", "tone", {})
    first, second = audio.joined(a, 16000, True, 0.01), audio.joined(b, 16000, False, 0.01)
    assert len(first) == 100 and first.all()
    assert len(second) == 160 + 200 and not second[:160].any() and second[160:].all()  # resampled 8 -> 16 kHz
    samples, rate = audio.concat([a, b], 0.01)
    assert rate == 16000 and np.array_equal(samples, np.concatenate([first, second]))


# -- clause by clause (the streamed routes) -----------------------------------------------------------

TWO = "Good morning, and thank you for coming. Have a nice trip."


def _pieces(pipe: Pipeline, text: str, **kw: Any) -> tuple[list[Any], Any]:
    async def go() -> tuple[list[Any], Any]:
        run = pipe.speech_translate(text, clauses=True, **kw)
        return [p async for p in run], run

    return asyncio.run(go())


def test_a_streamed_translation_is_spoken_clause_by_clause_in_order() -> None:
    pieces, run = _pieces(_echo_tone({"stream_ms": 5}), TWO)
    assert [(p.sentence, p.clause, p.text) for p in pieces] == [
        (0, 0, "JA:Good morning,"),
        (0, 1, " and thank you for coming."),
        (1, 0, "JA:Have a nice trip."),
    ]
    assert all(p.speech is not None and p.speech.text == p.text.strip() for p in pieces)
    # a clause after a comma follows a short pause, a new sentence the sentence gap, the first nothing
    assert [p.gap_s for p in pieces] == [0.0, CLAUSE_PAUSE_S, GAP_S]
    # the records are the sentences' whole translations
    assert [r.text for r in run.records] == ["JA:Good morning, and thank you for coming.", "JA:Have a nice trip."]
    assert run.translation() == "JA:Good morning, and thank you for coming.JA:Have a nice trip."


def test_the_first_clause_is_spoken_before_its_translation_is_finished() -> None:
    async def go() -> tuple[Any, list[Any]]:
        run = _echo_tone({"stream_ms": 30}).speech_translate("Hello there, this is a longer sentence.", clauses=True)
        first = await run.__anext__()
        records_at_first_audio = list(run.records)
        rest = [p async for p in run]
        return first, [records_at_first_audio, rest, run.records]

    first, (at_first, rest, records) = asyncio.run(go())
    assert first.text == "JA:Hello there," and first.speech is not None
    assert at_first == []  # the sentence was still being decoded when its first clause was heard
    assert [p.text for p in rest] == [" this is a longer sentence."] and len(records) == 1


def test_later_sentences_start_decoding_once_the_first_audio_is_out() -> None:
    # decoded side by side from the start, they would share the cores with the clause the listener waits for
    pipe = _echo_tone({"stream_ms": 5}, {"work_ms": 50})
    backend = pipe.translator.backend
    started: list[tuple[str, int]] = []
    stream = backend.translate_stream

    def recorded(text: str, *args: Any) -> Any:
        started.append((text, len(run.read)))
        return stream(text, *args)

    backend.translate_stream = recorded  # type: ignore[method-assign]

    async def go() -> list[Any]:
        nonlocal run
        run = pipe.speech_translate(TWO + " Goodbye now.", clauses=True)
        return [p async for p in run]

    run: Any = None
    pieces = asyncio.run(go())
    assert [p.text for p in pieces][:2] == ["JA:Good morning,", " and thank you for coming."]
    # the first sentence began with nothing heard; each later one only after the first clause was read
    assert started[0] == ("Good morning, and thank you for coming.", 0)
    assert sorted(n for _, n in started[1:]) == [1, 1], started


def test_the_first_audio_starts_at_the_first_phrase_and_later_sentences_wait_for_their_clauses() -> None:
    # the echo streams Japanese character by character, as a model decodes it
    text = "私の妹は病院で働いています。駅は東京駅の南口です。"
    pieces, run = _pieces(_echo_tone({"stream_ms": 2, "prefix": ""}), text, source_lang="zh", target_lang="ja")
    assert [(p.sentence, p.text) for p in pieces] == [
        (0, "私の妹は"),
        (0, "病院で働いています。"),
        (1, "駅は東京駅の南口です。"),  # not its first audio: a phrase of it is not spoken alone
    ]
    assert [p.gap_s for p in pieces] == [0.0, 0.0, GAP_S]  # no pause inside the sentence
    assert [p.joins_next for p in pieces] == [True, False, False]
    assert [p.after_phrase for p in pieces] == [False, True, False]
    assert run.translation() == text


def test_a_phrase_and_the_rest_of_its_sentence_join_without_the_speakers_padding() -> None:
    from graph.pieces import Joiner, Piece

    rate, pad = 16000, np.zeros(int(16000 * 0.3), dtype=np.int16)  # a speaker's silence at each end
    voice = (3000 * np.sin(np.arange(rate // 2) / 3)).astype(np.int16)

    def piece(text: str, joins_next: bool, gap: float, after_phrase: bool = False) -> Piece:
        sp = SpeechResult(np.concatenate([pad, voice, pad]), rate, text, "ja", "v", "tone", {})
        return Piece(
            0, text, None, sp, 0.0, 0.0, clause_text=text, gap_s=gap, joins_next=joins_next, after_phrase=after_phrase
        )

    joiner = Joiner(rate)
    phrase, rest = piece("私の妹は", True, 0.0), piece("病院で。", False, 0.0, after_phrase=True)
    lengths = [len(joiner.samples(p)) for p in (phrase, rest)]
    keep = int(rate * audio.KEEP_SILENCE_S)
    # the edges at the joint are cut to KEEP_SILENCE_S (the sine's first and last samples are near 0)
    assert lengths == pytest.approx([len(pad) + len(voice) + keep, keep + len(voice) + len(pad)], abs=3)
    after = joiner.samples(piece("次です。", False, GAP_S))
    assert len(after) == int(rate * GAP_S) + 2 * len(pad) + len(voice)  # other pieces keep theirs
    # NDJSON lines carry each piece as its own file: cut the same way
    from deployments.streams import sentence_line

    def wav_len(line: dict[str, Any]) -> int:
        return len(audio.decode(base64.b64decode(line["audio_base64"]), "wav")[0])

    lines = [sentence_line(phrase, "wav"), sentence_line(rest, "wav")]
    assert [wav_len(x) for x in lines] == pytest.approx(lengths, abs=3)
    assert wav_len(sentence_line(piece("次です。", False, GAP_S), "wav")) == 2 * len(pad) + len(voice)


def test_text_without_a_clause_boundary_is_spoken_at_the_sentence_end() -> None:
    pieces, run = _pieces(_echo_tone({"stream_ms": 2}), "no punctuation here at all")
    assert [p.text for p in pieces] == ["JA:no punctuation here at all"]
    assert pieces[0].translation is not None and run.translation() == "JA:no punctuation here at all"


def test_clause_mode_with_a_translator_that_cannot_stream_speaks_whole_sentences() -> None:
    pieces, run = _pieces(_echo_tone(), TWO)
    assert [p.text for p in pieces] == ["JA:Good morning, and thank you for coming.", "JA:Have a nice trip."]
    assert run.translation() == _echo_tone().run_sync(TWO).translation  # the non-streamed answer


def test_a_consumer_that_leaves_mid_sentence_stops_the_decoding() -> None:
    text = "One, two, three, four, five, six, seven, eight, nine, ten, eleven, twelve, thirteen."

    async def go() -> Any:
        run = _echo_tone({"stream_ms": 40}).speech_translate(text, clauses=True)
        await run.__anext__()
        await run.aclose()
        await asyncio.sleep(0.2)  # the decoding thread sees the stop at its next word
        return run

    run = asyncio.run(go())
    assert all(t.done() for t in run._tasks)
    assert run.records == []  # the sentence never finished


def test_streamed_speech_of_japanese_text_is_spoken_clause_by_clause() -> None:
    async def go() -> tuple[list[Any], Any]:
        run = _echo_tone().speak("こんにちは、今日はいい天気ですね。はい。", clauses=True)
        return [p async for p in run], run

    pieces, run = asyncio.run(go())
    assert [(p.sentence, p.clause, p.text) for p in pieces] == [
        (0, 0, "こんにちは、"),
        (0, 1, "今日はいい天気ですね。"),
        (1, 0, "はい。"),
    ]
    assert [p.gap_s for p in pieces] == [0.0, CLAUSE_PAUSE_S, GAP_S]
    assert run.translation() == "こんにちは、今日はいい天気ですね。はい。" and run.records == []

    # a first sentence without a comma starts at its first phrase; the next is spoken whole
    async def phrased() -> list[str]:
        run = _echo_tone().speak("私の妹は病院で働いています。駅は東京駅の南口です。", clauses=True)
        return [p.text async for p in run]

    assert asyncio.run(phrased()) == ["私の妹は", "病院で働いています。", "駅は東京駅の南口です。"]


@pytest.mark.parametrize(("max_batch_size", "sizes"), [(8, [1, 3, 3, 3]), (2, [1, 2, 2, 1])])
def test_requests_that_queue_during_a_call_share_the_next_backend_call(max_batch_size: int, sizes: list[int]) -> None:
    from graph.config import BatchConfig

    backend = registry.create_translator("echo", options={"work_ms": 60})  # blocking: runs in a thread
    backend.load()
    stage = TranslateStage(backend, BatchConfig(max_batch_size=max_batch_size))

    async def go() -> list[Any]:
        first = asyncio.ensure_future(stage.translate("Sentence 0.", "en", "ja"))
        await asyncio.sleep(0.02)  # the first call is running when the other three arrive
        rest = [stage.translate(f"Sentence {i}.", "en", "ja") for i in range(1, 4)]
        return [await first, *await asyncio.gather(*rest)]

    results = asyncio.run(go())
    assert [r.source_text for r in results] == [f"Sentence {i}." for i in range(4)]
    assert [int(r.timings_ms["batch_size"]) for r in results] == sizes


def test_a_speaker_that_fails_on_one_clause_falls_back_for_that_clause_only() -> None:
    speaker = build_speaker(
        {
            "backend": "tone",
            "options": {"fault": "raise", "fault_every": 3},  # call 3 fails: the warm-up and clause 1 pass
            "fallbacks": [{"backend": "tone", "voice": "square"}],
        },
        2000,
        "ja",
    )
    translator = registry.create_translator("echo", options={"stream_ms": 2})
    translator.load()
    pipe = Pipeline(TranslateStage(translator), SpeakStage(speaker), source_lang="en", target_lang="ja")
    text = "One, two, three, four, five, six, seven, eight."

    async def go() -> list[Any]:
        return [p async for p in pipe.speech_translate(text, clauses=True)]

    pieces = asyncio.run(go())
    assert len(pieces) >= 3 and all(p.speech is not None for p in pieces)  # the stream went on
    served = [p.speech.fallback_from is not None for p in pieces if p.speech is not None]
    # the clause already spoken kept its audio; the failing clause (and, while the primary is marked
    # unhealthy, the ones after it) came from the fallback
    assert served[0] is False and served[1] is True, served


@pytest.mark.parametrize(
    ("final", "spoken", "unspoken", "rest"),
    [
        ("こんにちは、元気ですか？", "こんにちは、", "元", "元気ですか？"),
        ("Good morning, and thanks.", "Good  morning,", " and", " and thanks."),  # whitespace differs
        ("こんにちは、元気ですか？", "「こんにちは、", "元", "元"),  # the cleaning changed what was said
        ("はい。", "はい。", "", ""),
    ],
)
def test_the_rest_of_a_streamed_sentence_is_the_record_past_what_was_said(
    final: str, spoken: str, unspoken: str, rest: str
) -> None:
    from graph.pipeline import _rest

    assert _rest(final, spoken, unspoken) == rest
