"""Hostile-input suite: property helpers for the tests, and the runner that counts what they tried.

The property tests (tests/**/test_hostile*.py, tests/**/test_schema*.py and the hostile-text
properties in tests/unit/test_subprocess_engines.py) run each property through ``check``,
which counts every input tried. ``python -m benchmarks.hostile`` runs that suite in-process
and writes the counts, and which properties failed, to benchmarks/results/hostile-input.json
for the reliability report::

    python -m benchmarks.hostile            # the default budget (as in `pytest -m "not slow"`)
    python -m benchmarks.hostile --long     # the slow-marked variants: 20x the examples

Budgets: each property names its default example count; ``HAYAKU_HYPOTHESIS=long`` (or the
``slow``-marked ``long`` variant of a test) multiplies it by ``LONG_FACTOR``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from hypothesis import strategies as st

from backends.base import OPENAI_VOICES

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "hostile-input.json"
RESULT_LONG = RESULT.with_name("hostile-input-long.json")
LONG_ENV = "HAYAKU_HYPOTHESIS"
LONG_FACTOR = 20
#: the suite, relative to the repository root
SUITE = (
    "tests/unit/test_hostile_input.py",
    "tests/unit/test_subprocess_engines.py",
    "tests/integration/test_hostile_http.py",
    "tests/integration/test_schema_fuzz.py",
)
#: failures the suite found while it was written, and their fixes (the runs after them find none)
FOUND_AND_FIXED = [
    {
        "property": "schemathesis status_code/response_schema conformance, every POST route",
        "failure": "undocumented statuses (400 malformed JSON, 401, 413, 503) and a 422 documented as FastAPI's "
        "{detail: [...]} while hayaku answers {error: {type, message}}",
        "fix": "deployments/http/app.py documents ErrorResponse for 400/401/413/422/503 on every operation",
    },
    {
        "property": "HTTP text fields: lone surrogates",
        "failure": 'a JSON string "\\ud800" was accepted and the answer could not be encoded: HTTP 500',
        "fix": "request models refuse text without a UTF-8 form with a 422 naming the position",
    },
    {
        "property": "text through espeak (program and library)",
        "failure": "a lone surrogate raised UnicodeEncodeError (a 500) instead of a clear error",
        "fix": "backends.text.engine_text refuses it with a 400, like NUL",
    },
    {
        "property": "voice names",
        "failure": "'sine\\n' passed safe_name: the regex's $ also matches before a final newline",
        "fix": "safe_name uses fullmatch",
    },
    {
        "property": "model specs",
        "failure": "'~nosuchuser/x' raised RuntimeError (expanduser), a 10,000-character spec raised OSError "
        "ENAMETOOLONG (Path.exists), and '/' made the local-model fingerprint walk the whole file system",
        "fix": "backends.store.existing_path never raises; the fingerprint stops after 200 files",
    },
    {
        "property": "YAML config files",
        "failure": "nesting past ~330 levels raised RecursionError, an integer of 4,301+ digits raised ValueError, "
        "a non-UTF-8 file raised UnicodeDecodeError: tracebacks instead of a ConfigError",
        "fix": "graph.yaml_files.read_yaml turns each into a ConfigError naming the file",
    },
    {
        "property": "config args (parse_args)",
        "failure": "deeply nested or self-referential values raised RecursionError, and huge ints ValueError, "
        "while the error message was being written (repr)",
        "fix": "graph.stage_checks.check_shape refuses nesting past 32 levels or over 100,000 values with the path; "
        "messages quote values through backends.base.short_repr (cut, never raises)",
    },
]

#: inputs tried per property name, in this process
COUNTS: Counter[str] = Counter()


def long_run() -> bool:
    return os.environ.get(LONG_ENV, "").lower() == "long"


def budget(n: int, depth: str = "quick") -> int:
    """Examples for a property whose default is ``n``: ``LONG_FACTOR`` times more for the long variant."""
    return n * LONG_FACTOR if depth == "long" or long_run() else n


def tried(name: str, n: int = 1) -> None:
    """Counts ``n`` inputs tried by property ``name``."""
    COUNTS[name] += n


def check(name: str, strategy: Any, prop: Callable[[Any], None], examples: int, **settings_kw: Any) -> None:
    """Runs ``prop`` on ``examples`` inputs drawn from ``strategy`` (hypothesis), counting each one.

    No example database is written, and no deadline applies: these machines are shared and slow,
    and a property is about answers, not time.
    """
    from hypothesis import HealthCheck, given, settings

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        **settings_kw,
    )
    @given(strategy)
    def run(value: Any) -> None:
        tried(name)
        prop(value)

    run()


# -- strategies: what a hostile client or config author sends ------------------------------------

#: every Unicode plane (0 to 16), lone surrogates aside (they get their own strategy)
_SURROGATE_CATEGORY: tuple[Literal["Cs"]] = ("Cs",)
EVERY_PLANE = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=_SURROGATE_CATEGORY)
#: lone UTF-16 surrogates: a JSON body can carry them as \ud800 escapes, valid UTF-8 cannot
SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=())
#: pieces known to trip text handling: direction marks, combining marks, emoji sequences,
#: controls, markup, engine commands, flags, format strings
SPECIAL_TEXT = (
    "\u202e",  # right-to-left override
    "\u200f",
    "مرحبا بالعالم",
    "שלום",
    "e\u0301\u0301\u0301",
    "\u0301",
    "Z\u0351\u0363\u036b\u0300\u0489",
    "👨‍👩‍👧‍👦",
    "🇯🇵",
    "\U0001f600",
    "\x00",
    "\x07\x08\x1b[31m",
    "\r\n",
    "\ufeff",
    "\uffff",
    "\U0010ffff",
    "\u2028\u2029",
    "\u200b",
    "<speak><prosody rate='x-slow'>hi</prosody></speak>",
    "<break time='10s'/>",
    "<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><x>&e;</x>",
    "]]>",
    "<!--",
    "&amp;&#0;&#x0;",
    "[[slnc 5000]]",
    "-",
    "--help",
    "-v en -w /tmp/x.wav",
    "$(id)",
    "`id`",
    "; rm -rf /",
    "%s%n{0}{}",
    "../",
    "。",
    "Mr. Dr. e.g. 3.14.",
)
TEXT = st.lists(
    st.one_of(st.text(EVERY_PLANE, max_size=16), st.sampled_from(SPECIAL_TEXT)), min_size=0, max_size=10
).map("".join)
#: text that begins like a command-line flag
DASH_TEXT = TEXT.map(lambda t: "-" + t)
#: text with lone surrogates mixed in
SURROGATE_TEXT = st.lists(st.one_of(st.text(EVERY_PLANE, max_size=4), SURROGATES), min_size=1, max_size=6).map("".join)
MB = 1 << 20
#: strings of about 1 MB (characters), from repeated random pieces
MEGABYTE_TEXT = st.builds(
    lambda piece, extra: (piece * (MB // len(piece) + 1))[: MB + extra],
    st.text(EVERY_PLANE, min_size=1, max_size=8),
    st.integers(0, 16),
)
#: voice and model names: traversal, absolute paths, URLs, NUL, flags, odd lengths
HOSTILE_NAMES = (
    "../../etc/passwd",
    "../../../../../../etc/shadow",
    "/etc/passwd",
    "/",
    "..",
    ".",
    "~",
    "~root/.ssh/id_rsa",
    "file:///etc/passwd",
    "http://169.254.169.254/latest/meta-data/",
    "https://evil.example/model",
    "\\\\server\\share\\x",
    "C:\\Windows\\win.ini",
    "sine/../square",
    "a/../../b",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..%c0%af..%c0%afetc",
    "sine\x00",
    "\x00",
    "square\x00.wav",
    "",
    " ",
    "sine ",
    "sine\n",
    "SINE",
    "-v",
    "--help",
    "$(id)",
    "a" * 65,
    "a" * 10_000,
    "org/name",
    "facebook/../../etc",
)
#: names a voice may also be: its aliases (OpenAI's voice names), which resolve to another voice
ALIAS_NAMES = st.sampled_from(OPENAI_VOICES)
NAMES = st.one_of(
    st.sampled_from(HOSTILE_NAMES),
    ALIAS_NAMES,
    st.text(EVERY_PLANE, max_size=24),
    st.tuples(st.sampled_from(HOSTILE_NAMES) | ALIAS_NAMES, st.text(EVERY_PLANE, max_size=8)).map("".join),
)
#: JSON/YAML-like leaves: wrong types, big and non-finite numbers, unicode, hostile names
DUMPABLE_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**4000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(EVERY_PLANE, max_size=16),
    st.sampled_from(HOSTILE_NAMES),
)
#: ints past Python's 4300-digit int<->str limit: repr() and str() of them raise (YAML cannot write them)
HUGE_INTS = st.integers(min_value=10**4300, max_value=10**4400)


def _containers(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(EVERY_PLANE, max_size=8), inner, max_size=4)
        ),
        max_leaves=16,
    )


#: values a YAML file can hold
YAML_VALUES = _containers(DUMPABLE_LEAVES)
#: values a Python caller can pass (huge ints too)
VALUES = _containers(st.one_of(DUMPABLE_LEAVES, HUGE_INTS))


def nested(depth: int, as_list: bool = False) -> Any:
    """A value nested ``depth`` levels deep (lists or dicts)."""
    value: Any = "x"
    for _ in range(depth):
        value = [value] if as_list else {"a": value}
    return value


def cyclic() -> dict[str, Any]:
    """A mapping that contains itself (what a YAML anchor and alias can make)."""
    d: dict[str, Any] = {"backend": "echo"}
    d["options"] = d
    return d


DEEP = st.one_of(
    st.builds(nested, st.integers(100, 5000), st.booleans()),
    st.just(None).map(lambda _: cyclic()),
)


class _Outcomes:
    """pytest plugin: which tests failed (a failed property test is a failure found)."""

    def __init__(self) -> None:
        self.results: dict[str, str] = {}

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when == "call" or report.outcome != "passed":
            prev = self.results.get(report.nodeid)
            if prev != "failed":
                self.results[report.nodeid] = report.outcome


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.hostile", description=__doc__.split("\n\n")[0])
    p.add_argument("--long", action="store_true", help=f"only the slow variants: {LONG_FACTOR}x the examples")
    p.add_argument("--out", type=Path, help=f"JSON to write (default {RESULT.name}, or {RESULT_LONG.name} with --long)")
    p.add_argument("pytest_args", nargs="*", help="extra pytest arguments (e.g. -x)")
    ns = p.parse_args(argv)
    import pytest

    # --long runs the slow-marked variants, which take LONG_FACTOR times the examples already
    marker = ["-m", "slow"] if ns.long else ["-m", "not slow"]
    outcomes = _Outcomes()
    start = time.perf_counter()
    print(f"[hostile] running {len(SUITE)} files ({'long' if ns.long else 'default'} budget) ...", file=sys.stderr)
    code = pytest.main(
        ["-q", "-p", "no:cacheprovider", *marker, *[str(ROOT / s) for s in SUITE], *ns.pytest_args], plugins=[outcomes]
    )
    elapsed = time.perf_counter() - start
    # The tests count into the imported module, which is not this one when run with `python -m`.
    from benchmarks import hostile

    counts = hostile.COUNTS
    failed = sorted(k for k, v in outcomes.results.items() if v == "failed")
    data = {
        "command": "python -m benchmarks.hostile" + (" --long" if ns.long else ""),
        "budget": "long" if ns.long else "default",
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "seconds": round(elapsed, 1),
        "inputs_tried": dict(sorted(counts.items())),
        "inputs_tried_total": sum(counts.values()),
        "tests": {
            "passed": sum(v == "passed" for v in outcomes.results.values()),
            "skipped": sum(v == "skipped" for v in outcomes.results.values()),
            "failed": len(failed),
        },
        "failures_found": failed,
        "found_and_fixed_while_writing": FOUND_AND_FIXED,
        "pytest_exit_code": int(code),
    }
    out = ns.out or (RESULT_LONG if ns.long else RESULT)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    print(f"[hostile] {data['inputs_tried_total']} inputs, {len(failed)} failing tests -> {out}", file=sys.stderr)
    return 0 if int(code) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
