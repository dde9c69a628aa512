"""The Dockerfile against what it must agree with, read statically (no image registry here to build it):
the KubeRay manifest that runs it, pyproject.toml, scripts/setup.sh and the README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from serve import kuberay

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
MANIFEST = yaml.safe_load((ROOT / "deploy" / "kuberay" / "rayservice.yaml").read_text())


def _args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE, flags=re.M))


def _extras_closure(names: list[str]) -> set[str]:
    """The extras ``names`` install, with those they name as ``hayaku[...]`` themselves."""
    table: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        assert name in table, f"the Dockerfile installs extra {name!r}, which pyproject.toml does not define"
        if name in seen:
            continue
        seen.add(name)
        for req in table[name]:
            parsed = Requirement(req)
            if parsed.name == "hayaku":
                todo.extend(parsed.extras)
    return seen


def test_same_ray_as_the_manifest_and_pyproject() -> None:
    (base,) = re.findall(r"^FROM (\S+)$", DOCKERFILE, flags=re.M)
    assert base == "rayproject/ray:${RAY_VERSION}-py311-${RAY_FLAVOR}"
    args = _args()
    assert args["RAY_FLAVOR"] == "cpu"  # the official CPU image; gpu is the noted variant
    assert args["RAY_VERSION"] == MANIFEST["spec"]["rayClusterConfig"]["rayVersion"]
    serve_extra = PYPROJECT["project"]["optional-dependencies"]["serve"]
    ray_req = next(Requirement(r) for r in serve_extra if r.startswith("ray"))
    assert args["RAY_VERSION"] in ray_req.specifier, (args["RAY_VERSION"], str(ray_req))
    assert '"ray[serve]==${RAY_VERSION}"' in DOCKERFILE, "pip must keep the image's own Ray"


def test_same_python_as_pyproject() -> None:
    tag_python = "3.11"  # py311 in the FROM tag
    assert "-py311-" in DOCKERFILE
    assert tag_python in SpecifierSet(PYPROJECT["project"]["requires-python"])
    assert PYPROJECT["tool"]["mypy"]["python_version"] == tag_python


def test_same_extras_and_torch_as_the_project_installs() -> None:
    args = _args()
    extras = args["HAYAKU_EXTRAS"].split(",")
    closure = _extras_closure(extras)
    # what `auto` chooses on a CPU node (llama.cpp translator, kokoro/openjtalk speakers), Serve, every
    # response format, and the bundled models themselves
    assert {"serve", "aac", "llm", "kokoro", "openjtalk", "espeak", "models"} <= closure, closure
    assert f"hayaku[{args['HAYAKU_EXTRAS']}]" in (ROOT / "README.md").read_text()
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert f"TORCH=${{HAYAKU_TORCH:-{args['TORCH']}}}" in setup, "the same torch as scripts/setup.sh"


def test_models_are_prepared_in_the_image_the_manifest_runs() -> None:
    assert re.search(r"^ENV HAYAKU_HOME=\S+", DOCKERFILE, flags=re.M)
    assert "hayaku models prepare" in DOCKERFILE
    assert f"docker build -t {kuberay.DEFAULT_IMAGE} ." in DOCKERFILE
    cluster = MANIFEST["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for pod in pods:
        spec = pod["template"]["spec"]
        (container,) = spec["containers"]
        assert container["image"] == kuberay.DEFAULT_IMAGE
        # the image's own HAYAKU_HOME, with the models in it: nothing may hide it
        assert all(e["name"] != "HAYAKU_HOME" for e in container.get("env", []))
        assert "volumes" not in spec and "initContainers" not in spec
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git"} <= set(ignored)
