"""configs/cluster.yaml, the KubeRay manifest generated from it, and the check that they agree."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from benchmarks.cluster import SCRIPT, Replica, placement_problems, synthetic_config, write_config
from graph.config import ConfigError
from graph.yaml_files import load_app_args, read_yaml
from serve import kuberay
from serve.cli import main as hayaku

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "cluster.yaml"
MANIFEST = ROOT / "deploy" / "kuberay" / "rayservice.yaml"


def _groups(manifest: dict) -> dict[str, dict]:
    cluster = manifest["spec"]["rayClusterConfig"]
    return {"head": cluster["headGroupSpec"], **{g["groupName"]: g for g in cluster["workerGroupSpecs"]}}


def test_cluster_yaml_validates_and_places_every_stage_by_a_custom_resource() -> None:
    (app,) = load_app_args(CONFIG)
    deps = {d["name"]: d for d in app.deployments}
    assert set(deps) == {"Ingress", "Translator", "Speaker"}
    wanted = {"Ingress": "ingress_node", "Translator": "translate_node", "Speaker": "speak_node"}
    for name, resource in wanted.items():
        assert resource in deps[name]["ray_actor_options"]["resources"], name
    auto = deps["Translator"]["autoscaling_config"]
    assert (auto["min_replicas"], auto["max_replicas"]) == (1, 2) and auto["target_ongoing_requests"] > 0
    assert read_yaml(CONFIG)["http_options"]["host"] == "127.0.0.1"


def test_committed_manifest_agrees_with_the_serve_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert hayaku(["kuberay", "check", str(CONFIG), str(MANIFEST)]) == 0
    assert "agrees" in capsys.readouterr().out


def test_check_fails_with_a_diff_when_the_manifest_disagrees(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    altered = copy.deepcopy(manifest)
    _groups(altered)["translate"]["rayStartParams"]["resources"] = json.dumps(json.dumps({"translate_nodes": 1}))
    serve_cfg = yaml.safe_load(altered["spec"]["serveConfigV2"])
    serve_cfg["applications"][0]["deployments"][1]["autoscaling_config"]["max_replicas"] = 5
    altered["spec"]["serveConfigV2"] = yaml.safe_dump(serve_cfg)
    path = tmp_path / "rayservice.yaml"
    path.write_text(yaml.safe_dump(altered))
    assert kuberay.main(["check", str(CONFIG), str(path)]) == 1
    out = capsys.readouterr().out
    diff = [ln for ln in out.splitlines() if ln[:1] in ("+", "-") and not ln.startswith(("---", "+++"))]
    changed = {ln[0] + ln[1:].strip() for ln in diff}
    assert changed == {"-translate_node: 1", "+translate_nodes: 1", "-max_replicas: 2", "+max_replicas: 5"}, out
    assert "regenerate" in out


def test_check_leaves_the_operators_part_alone(tmp_path: Path) -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    for group in _groups(manifest).values():
        container = group["template"]["spec"]["containers"][0]
        container["image"] = "registry.example.com/hayaku:1.2"
        container["resources"]["limits"]["memory"] = "32Gi"
    manifest["spec"]["rayClusterConfig"]["rayVersion"] = "9.9.9"
    path = tmp_path / "rayservice.yaml"
    path.write_text(yaml.safe_dump(manifest))
    assert kuberay.check(CONFIG, path) == []


def test_generated_groups_offer_what_the_deployments_ask_for(tmp_path: Path) -> None:
    out = tmp_path / "rayservice.yaml"
    assert kuberay.main(["generate", str(CONFIG), "-o", str(out), "--image", "example/hayaku:test"]) == 0
    assert kuberay.check(CONFIG, out) == []
    manifest = yaml.safe_load(out.read_text())
    assert (manifest["apiVersion"], manifest["kind"]) == ("ray.io/v1", "RayService")
    groups = _groups(manifest)
    assert set(groups) == {"head", "translate", "speak"}
    resources = {n: json.loads(json.loads(g["rayStartParams"]["resources"])) for n, g in groups.items()}
    assert resources == {"head": {"ingress_node": 1}, "translate": {"translate_node": 1}, "speak": {"speak_node": 1}}
    # two translator replicas (0.5 of a node each, 1 CPU each) fit on one translate pod
    assert groups["translate"]["rayStartParams"]["num-cpus"] == "2"
    assert (groups["translate"]["minReplicas"], groups["translate"]["maxReplicas"]) == (1, 2)
    # the image (Dockerfile) holds the prepared models: no pod builds a cache of its own
    assert all("initContainers" not in g["template"]["spec"] for g in groups.values())
    serve_cfg = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    assert serve_cfg["http_options"] == {"host": "0.0.0.0", "port": 8000}
    source = read_yaml(CONFIG)
    assert serve_cfg["applications"] == source["applications"]
    assert all(g["template"]["spec"]["containers"][0]["image"] == "example/hayaku:test" for g in groups.values())


def test_a_replica_asking_for_more_than_a_node_offers_is_refused(tmp_path: Path) -> None:
    cfg = read_yaml(CONFIG)
    cfg["applications"][0]["deployments"][1]["ray_actor_options"]["resources"] = {"translate_node": 2}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match=r"deployments\[1\]\.ray_actor_options\.resources.*fraction"):
        kuberay.build_manifest(path)


def test_synthetic_copy_keeps_deployments_and_placement(tmp_path: Path) -> None:
    source = read_yaml(CONFIG)
    cfg = synthetic_config(18000, request_timeout_s=7)
    write_config(cfg, tmp_path / "echo.yaml")  # validates like `hayaku serve`
    assert cfg["applications"][0]["deployments"] == source["applications"][0]["deployments"]
    args = cfg["applications"][0]["args"]
    assert (args["translator"]["backend"], args["speaker"]["backend"]) == ("echo", "tone")
    assert args["limits"]["request_timeout_s"] == 7
    assert cfg["http_options"] == {"host": "127.0.0.1", "port": 18000}
    fixed = synthetic_config(18000, work_ms=5, batch=1, translator_replicas=2)
    dep = fixed["applications"][0]["deployments"][1]
    assert dep["num_replicas"] == 2 and "autoscaling_config" not in dep
    assert dep["ray_actor_options"] == source["applications"][0]["deployments"][1]["ray_actor_options"]
    assert fixed["applications"][0]["args"]["translator"]["options"] == {"work_ms": 5}


def test_placement_problems_name_the_misplaced_replica() -> None:
    cfg = read_yaml(CONFIG)
    head = {"CPU": 1.0, "ingress_node": 1.0}
    ok = [
        Replica("Ingress", "i1", "n0", 1, head),
        Replica("Translator", "t1", "n1", 2, {"CPU": 2.0, "translate_node": 1.0}),
        Replica("Speaker", "s1", "n2", 3, {"CPU": 1.0, "speak_node": 1.0}),
    ]
    assert placement_problems(ok, cfg) == []
    wrong = [*ok[:2], Replica("Speaker", "s2", "n1", 4, {"CPU": 2.0, "translate_node": 1.0})]
    assert placement_problems(wrong, cfg) == ["Speaker replica s2 runs on node n1 without ['speak_node']"]
    assert placement_problems(ok[:2], cfg) == ["no live Speaker replica"]


def test_cluster_script_explains_itself_and_refuses_nonsense(tmp_path: Path) -> None:
    env = {"HAYAKU_CLUSTER_DIR": str(tmp_path / "none"), "PATH": "/usr/bin:/bin"}
    help_ = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, env=env, timeout=30)
    assert help_.returncode == 0 and "stop-node NAME" in help_.stdout
    bad = subprocess.run([str(SCRIPT), "explode"], capture_output=True, text=True, env=env, timeout=30)
    assert bad.returncode == 1 and "usage:" in bad.stderr
    none = subprocess.run([str(SCRIPT), "status"], capture_output=True, text=True, env=env, timeout=30)
    assert none.returncode == 1 and "no cluster in" in none.stderr
    role = subprocess.run([str(SCRIPT), "start-node", "gpu"], capture_output=True, text=True, env=env, timeout=30)
    assert role.returncode == 1 and "valid: translate, speak" in role.stderr
