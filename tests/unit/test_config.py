"""Config validation: every bad field fails before any replica starts, naming its YAML path."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import pytest
import yaml

from graph.auto import resolve_graph
from graph.config import ConfigError, GraphArgs, merge_update, parse_args
from graph.yaml_files import load_app_args

ROOT = Path(__file__).resolve().parents[2]
TINY = {"translator": {"backend": "echo"}, "speaker": {"backend": "tone"}}


def _yaml(tmp_path: Path, args: dict[str, Any], deployments: list[dict[str, Any]] | None = None) -> Path:
    cfg = {
        "applications": [
            {
                "name": "a",
                "route_prefix": "/",
                "import_path": "serve.app:build",
                "args": args,
                "deployments": deployments or [],
            }
        ]
    }
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            {"translator": {"backend": "nope"}},
            "applications[0].args.translator.backend: unknown translator backend "
            "'nope'; valid: auto, coreml, ctranslate2, echo",
        ),
        (
            {**TINY, "translator": {"backend": "echo", "options": {"num_beams": 3}}},
            "applications[0].args.translator.options.num_beams: unknown option (got 3). "
            "Valid options: fault, fault_every, fault_for_s, hang_s, work_ms, prefix, uppercase",
        ),
        (
            {**TINY, "speaker": {"backend": "tone", "options": {"frequency": "loud"}}},
            "applications[0].args.speaker.options.frequency: Input should be a valid number",
        ),
        (
            {**TINY, "speaker": {"backend": "tone", "voice": "nightingale"}},
            "applications[0].args.speaker.voice: unknown voice 'nightingale' for tone; valid voices: sine, square",
        ),
        (
            {**TINY, "speaker": {"backend": "tone", "voice": "../x"}},
            "applications[0].args.speaker.voice: invalid voice",
        ),
        ({**TINY, "colour": "red"}, "applications[0].args.colour: unknown option (got 'red')"),
        ({**TINY, "limits": {"max_chars": 0}}, "applications[0].args.limits.max_chars: Input should be greater"),
        ({**TINY, "target_lang": "klingon"}, "applications[0].args.target_lang: unknown language 'klingon'"),
        ({**TINY, "target_lang": "en"}, "applications[0].args.target_lang: same as source_lang"),
        (
            {**TINY, "translator": {"backend": "echo", "batch": {"max_batch_size": 0}}},
            "applications[0].args.translator.batch.max_batch_size",
        ),
    ],
)
def test_bad_yaml_names_the_path(tmp_path: Path, args: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_app_args(_yaml(tmp_path, args))
    assert needle in str(err.value)
    assert str(err.value).startswith(str(tmp_path))


def test_unknown_deployment_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"deployments\[0\]\.name: 'Translater' .* valid: Ingress, Translator"):
        load_app_args(_yaml(tmp_path, TINY, [{"name": "Translater"}]))
    with pytest.raises(ConfigError, match="with colocate: true; valid: Ingress"):
        load_app_args(_yaml(tmp_path, {**TINY, "colocate": True}, [{"name": "Translator"}]))


@pytest.mark.parametrize("name", ["tiny", "fast", "cpu", "cuda", "m4max", "ab"])
def test_shipped_configs_are_valid(name: str) -> None:
    (app,) = load_app_args(ROOT / "configs" / f"{name}.yaml")
    assert app.args.target_lang == "ja"
    raw = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
    assert raw["http_options"]["host"] == "127.0.0.1"


def test_parse_args_accepts_dict_or_model() -> None:
    args = parse_args({**TINY, "source_lang": "English", "target_lang": "ja-JP"})
    assert (args.source_lang, args.target_lang) == ("en", "ja")
    assert parse_args(GraphArgs.model_validate(TINY)).translator.backend == "echo"
    assert all(f.description for f in GraphArgs.model_fields.values())


def test_unavailable_backend_fails_with_its_reason() -> None:
    if platform.system() == "Darwin":
        pytest.skip("`say` runs on macOS; this checks the message on other systems")
    with pytest.raises(ConfigError) as err:
        resolve_graph({**TINY, "speaker": {"backend": "say"}})
    assert "args.speaker.backend: 'say' cannot run on this machine: say runs only on Darwin" in str(err.value)


def test_user_config_merge() -> None:
    stage = {"backend": "echo", "model": None, "options": {"prefix": "a"}, "batch": {"max_batch_size": 4}}
    assert merge_update(stage, {"options": {"uppercase": True}}, "translator", "uc")["options"] == {"uppercase": True}
    switched = merge_update({**stage, "model": "m"}, {"backend": "transformers"}, "translator", "uc")
    assert switched["options"] == {} and switched["model"] is None
    with pytest.raises(ConfigError, match=r"uc\.nope: unknown option"):
        merge_update(stage, {"nope": 1}, "translator", "uc")
    with pytest.raises(ConfigError, match=r"uc\.voice: the translator has no voice"):
        merge_update(stage, {"voice": "x"}, "translator", "uc")


def test_translator_niceness_defaults_low_and_is_bounded() -> None:
    assert parse_args({}).translator.nice == 19
    assert parse_args({"translator": {"nice": None}}).translator.nice is None
    with pytest.raises(ConfigError, match=r"args\.translator\.nice"):
        parse_args({"translator": {"nice": 25}})
    stage = {"backend": "tone", "options": {}}
    with pytest.raises(ConfigError, match=r"uc\.nice: only the translator's priority is set"):
        merge_update(stage, {"nice": 10}, "speaker", "uc")
    assert merge_update({"backend": "echo", "nice": 19}, {"nice": 17}, "translator", "uc")["nice"] == 17
