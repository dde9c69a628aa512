"""Reading Ray Serve YAML files: the file itself, the hayaku applications in it, and whether it is exposed.

A hayaku YAML is Ray Serve's own config file. ``read_yaml`` turns every way a file can be
unreadable (missing, not UTF-8, not YAML, nested too deeply, too big) into a ConfigError naming
the file; ``load_app_args`` finds each application whose ``import_path`` is ``serve.app:build``
and validates its ``args`` with ``graph.config``; ``exposure_warning`` says when a config listens
beyond loopback without an API key. The schema of ``args`` itself lives in ``graph.config``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from backends.base import format_validation_error, short_repr
from graph.config import ConfigError, GraphArgs, deployment_names, parse_args
from graph.stage_checks import check_shape

IMPORT_PATH = "serve.app:build"
#: the largest config file read: far beyond any real config, far below what breaks a parser
MAX_YAML_BYTES = 4 * 1_048_576


@dataclass(frozen=True)
class AppArgs:
    """One hayaku application found in a Ray Serve YAML, with its validated args."""

    name: str
    index: int
    where: str
    args: GraphArgs
    deployments: tuple[dict[str, Any], ...]


def read_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    p = Path(path)
    try:
        if p.stat().st_size > MAX_YAML_BYTES:
            raise ConfigError(f"{p}: {p.stat().st_size} bytes; a config may have at most {MAX_YAML_BYTES}")
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {short_repr(str(exc), 400)}") from None
    except RecursionError:
        raise ConfigError(f"{p}: not valid YAML: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer past Python's 4300-digit limit
        raise ConfigError(f"{p}: not valid YAML: {short_repr(str(exc), 200)}") from None
    check_shape(data, str(p))
    if not isinstance(data, dict):
        raise ConfigError(
            f"{p}: expected a Ray Serve config (a mapping with 'applications'), got {type(data).__name__}"
        )
    return data


LOOPBACK_NAMES = ("localhost", "ip6-localhost")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: addresses no other machine can reach."""
    import ipaddress

    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _mapping(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def exposure_warning(data: dict[str, Any], environ: Mapping[str, str]) -> str | None:
    """A warning when a Serve YAML listens beyond loopback while some hayaku app has no API key.

    The key counts as set when the variable is in ``environ`` (the environment `serve run` hands
    to a Ray it starts) or in the application's ``runtime_env.env_vars``.
    """
    http = _mapping(data, "http_options")
    host = str(http.get("host") or environ.get("RAY_SERVE_DEFAULT_HTTP_HOST") or "127.0.0.1")
    if is_loopback(host):
        return None
    apps = data.get("applications")
    for app in apps if isinstance(apps, list) else []:
        if not isinstance(app, dict) or app.get("import_path") != IMPORT_PATH:
            continue
        var = str(_mapping(_mapping(app, "args"), "security").get("api_key_env") or "HAYAKU_API_KEY")
        env_vars = _mapping(_mapping(app, "runtime_env"), "env_vars")
        if not (environ.get(var) or env_vars.get(var)):
            return (
                f"http_options.host is {host!r}, reachable from other machines, and {var} is not set: anyone who "
                f"can reach this port can use the API. Set {var} (clients then send 'Authorization: Bearer <key>'), "
                "or bind host: 127.0.0.1"
            )
    return None


def load_app_args(yaml_path: str | Path, *, check: Literal["shape", "full"] = "full") -> list[AppArgs]:
    """Validates every ``serve.app:build`` application's args in a Ray Serve YAML.

    ``check="full"`` also checks backend names, options and voices against the registry.
    Errors name the path, e.g. ``configs/x.yaml: applications[0].args.translator.options.num_beams: ...``.
    """
    data = read_yaml(yaml_path)
    apps = data.get("applications")
    if not isinstance(apps, list) or not apps:
        raise ConfigError(
            f"{yaml_path}: applications: expected a non-empty list of applications, got {short_repr(apps)}"
        )
    found = []
    for i, app in enumerate(apps):
        where = f"applications[{i}]"
        if not isinstance(app, dict):
            raise ConfigError(f"{yaml_path}: {where}: expected a mapping, got {short_repr(app)}")
        if app.get("import_path") != IMPORT_PATH:
            continue
        try:
            args = parse_args(app.get("args"), f"{where}.args") if check == "full" else _shape_only(app, where)
        except ConfigError as exc:
            raise ConfigError(f"{yaml_path}: {exc}") from None
        deployments = app.get("deployments") or []
        if not isinstance(deployments, list):
            raise ConfigError(f"{yaml_path}: {where}.deployments: expected a list, got {short_repr(deployments)}")
        for j, dep in enumerate(deployments):
            name = dep.get("name") if isinstance(dep, dict) else None
            valid = deployment_names(args)
            if name not in valid:
                raise ConfigError(
                    f"{yaml_path}: {where}.deployments[{j}].name: {short_repr(name)} is not a deployment of "
                    f"{IMPORT_PATH}"
                    f"{' with colocate: true' if args.colocate else ''}; valid: {', '.join(valid)}"
                )
        found.append(AppArgs(str(app.get("name", "default")), i, f"{where}.args", args, tuple(deployments)))
    if not found:
        raise ConfigError(f"{yaml_path}: no application has import_path: {IMPORT_PATH}")
    return found


def _shape_only(app: dict[str, Any], where: str) -> GraphArgs:
    try:
        return GraphArgs.model_validate(app.get("args") or {})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, f"{where}.args")) from None
