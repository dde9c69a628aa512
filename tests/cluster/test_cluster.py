"""The hayaku graph on a local three-node Ray cluster made with Ray's own `ray start`.

    python -m pytest tests/cluster             # 5-15 minutes on a busy 2-core machine

Any environment hayaku is installed in with its serve extra runs it: the nodes use the `ray` CLI
and the Python of the environment running pytest (benchmarks/cluster_nodes.py), not a `.venv`
in the checkout.

scripts/cluster.sh starts a head (HTTP proxy, ingress), a translate_node worker and a
speak_node worker on loopback. configs/cluster.yaml is deployed with `serve deploy`, its stages
switched to the synthetic echo and tone backends (deployments and placement kept); Ray's state
API says where each replica runs; requests go over HTTP; the speaker's node is stopped and the
translator's node killed under load, each comes back, and meanwhile every request must end as a
200 or an explicit 503, and the graph must recover on the returned node. What the loss did is
checked from Ray's side too: the stage ran in that node's processes, none of them is left, the
GCS lists the node and the old replicas DEAD, and nothing answered 200 while the node was away.
Then Serve and every node of the cluster stop, and no process of it may be left.
``test_real_models`` deploys configs/cluster.yaml as it is (backend auto: the prepared offline
models).
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

pytest.importorskip("ray.serve", reason="the cluster tests need Ray Serve: pip install 'hayaku[serve]'")
httpx = pytest.importorskip("httpx", reason="the cluster tests need httpx: pip install 'hayaku[serve]'")

from backends.audio import decode_wav, rms  # noqa: E402
from backends.errors import HayakuError  # noqa: E402
from benchmarks.cluster import (  # noqa: E402
    CONFIG,
    RAY_CLI,
    SERVE_CLI,
    LocalCluster,
    node_loss,
    synthetic_config,
    write_config,
)
from graph.yaml_files import read_yaml  # noqa: E402
from tests.conftest import free_port  # noqa: E402

pytestmark = pytest.mark.slow

#: short, so a request waiting for a lost stage gives up (503) within the test's time
REQUEST_TIMEOUT_S = 10.0
#: how much later than request_timeout_s the ingress's 503 may arrive on a busy 2-core machine
ANSWER_SLACK_S = 5.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """Head + translate + speak nodes; at the end Serve and every node stop, and nothing may be left."""
    if RAY_CLI is None or SERVE_CLI is None:
        pytest.skip("Ray's CLIs are not installed with the Python running the tests: pip install 'hayaku[serve]'")
    # a short path: Ray's unix sockets live under it, and a socket path may not exceed 107 bytes
    tmp = Path(tempfile.mkdtemp(prefix="hkt-", dir="/tmp"))
    c = LocalCluster(tmp / "c")
    try:
        c.up()
    except Exception:
        with contextlib.suppress(Exception):
            c.down()
        raise
    try:
        yield c
    finally:
        with contextlib.suppress(Exception):
            c.serve("shutdown", "-y")
        sessions = c.node_sessions()
        c.down()
        left = {name: c.session_processes(sid) for name, sid in sessions.items() if c.session_processes(sid)}
        assert not left, f"processes of nodes still running after scripts/cluster.sh down: {left}"
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def port() -> int:
    """Serve's HTTP port for every deployment on this cluster (http_options are fixed once Serve runs)."""
    return free_port()


@pytest.fixture(scope="module")
def graph(cluster: LocalCluster, port: int, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """configs/cluster.yaml with echo/tone stages, deployed with `serve deploy`; its config and base URL."""
    cfg = synthetic_config(port, request_timeout_s=REQUEST_TIMEOUT_S)
    path = write_config(cfg, tmp_path_factory.mktemp("cluster") / "cluster-echo.yaml")
    cluster.deploy(path)
    cluster.wait_running(timeout_s=300)
    return {"config": cfg, "base": f"http://127.0.0.1:{port}"}


#: where configs/cluster.yaml puts each stage: on a node that offers this custom resource
PLACED_ON = {"Ingress": "ingress_node", "Translator": "translate_node", "Speaker": "speak_node"}


def _placed(replicas: list[Any]) -> None:
    """Asserts every stage has a live replica and every replica runs on a node offering its stage's resource."""
    assert {r.deployment for r in replicas} == set(PLACED_ON), [(r.deployment, r.replica_id) for r in replicas]
    wrong = [
        (r.deployment, r.node_id[:8], sorted(r.node_resources))
        for r in replicas
        if PLACED_ON[r.deployment] not in r.node_resources
    ]
    assert not wrong, f"replicas on a node without their stage's resource: {wrong}"


def _alive_nodes(cluster: LocalCluster) -> list[Any]:
    return [n for n in cluster.nodes() if n.state == "ALIVE"]


def test_placement_follows_the_custom_resources(cluster: LocalCluster, graph: dict[str, Any]) -> None:
    nodes = _alive_nodes(cluster)
    assert len(nodes) == 3, [(n.node_id[:8], n.resources_total) for n in nodes]
    assert sum(1 for n in nodes if n.is_head_node) == 1
    replicas = cluster.placement()
    _placed(replicas)
    by = {r.deployment: r for r in replicas}
    assert "translate_node" in by["Translator"].node_resources
    assert "speak_node" in by["Speaker"].node_resources
    assert "ingress_node" in by["Ingress"].node_resources
    assert len({by[d].node_id for d in ("Ingress", "Translator", "Speaker")}) == 3, "each stage on its own node"


def test_serves_requests_across_nodes(graph: dict[str, Any]) -> None:
    base = graph["base"]
    with httpx.Client(base_url=base, timeout=60, trust_env=False) as client:
        assert client.get("/healthz").status_code == 200
        r = client.post("/v1/translate", json={"text": "Hello there. How are you?"})
        assert r.status_code == 200, r.text
        assert r.json()["translation"] == "Hello there.How are you?"  # Japanese joins sentences without a space
        assert r.json()["sentences"] == 2
        r = client.post("/v1/speech-translate", json={"text": "Good morning."})
        assert r.status_code == 200, r.text
        assert unquote(r.headers["x-hayaku-translation"]) == "Good morning."
        samples, rate = decode_wav(r.content)
        assert rate == 24000 and len(samples) > 0.5 * rate and rms(samples) > 0.05


def check_node_loss(result: dict[str, Any], *, role: str, how: str) -> None:
    """What a loss of the ``role`` node must show, whether or not a request saw a 503 (the test's docstring)."""
    big = ("timeline", "replicas_before", "replicas_after", "replica_states")
    summary = {k: v for k, v in result.items() if k not in big}
    before, after = result["replicas_before"], result["replicas_after"]
    # where the stage ran: on a node with its resource, in the processes of the node taken away
    assert before and all(f"{role}_node" in r["node_resources"] for r in before), before
    assert result["replicas_in_node_session"], f"the replicas were not processes of node {result['node']}: {summary}"
    # the node is really gone: none of its processes left, the GCS lists it and the old replicas DEAD
    assert result["node_processes_left"] == [] and result["replica_pids_left"] == [], summary
    assert set(result["lost_nodes"].values()) == {"DEAD"}, summary
    assert set(result["old_replicas_after"].values()) == {"DEAD"}, summary
    # and no other node served the stage meanwhile: nothing was answered 200 while the node was away
    assert result["away_s"] > 1, summary
    assert result["answered_200_while_node_away"] == 0, summary
    # every request answered: a 200 or an explicit 503, none later than the ingress's deadline
    assert result["sent_during_loss"] > 0, summary
    assert result["other"] == 0, f"answers other than 200 or 503 while the node was gone: {summary}"
    assert result["longest_answer_s"] <= REQUEST_TIMEOUT_S + ANSWER_SLACK_S, summary
    if how == "kill":
        assert result["answered_503"] > 0, f"a crash went unnoticed: {summary}"
    assert result["recovered"], f"no request succeeded after the node came back: {summary}"
    # the replacement runs on the returned node: a new node with the stage's resource
    assert after and all(f"{role}_node" in r["node_resources"] for r in after), after
    assert {r["node_id"] for r in before}.isdisjoint(r["node_id"] for r in after), "the replacement is on the new node"


@pytest.mark.parametrize(("node", "how"), [("speak", "stop"), ("translate", "kill")])
def test_survives_the_loss_of_a_worker_node(
    cluster: LocalCluster, graph: dict[str, Any], node: str, how: str, artifacts: Path
) -> None:
    """The stage's node goes away under load and a new one comes back; every request is answered.

    ``stop`` drains the node (SIGTERM to its ``ray start``): Serve keeps the old replica serving
    while the replacement it starts cannot be placed (no other node has the resource), stops it
    shortly before the drain deadline, and the node exits. Requests that find no replica wait in
    the ingress: they are answered 200 when the returned node's replica comes up within
    request_timeout_s, else 503. Whether any 503 happens depends only on how long the new node
    takes to start, so the test does not require one; it requires what must hold either way.
    ``kill`` is a crash: nothing drains, the replica is just unreachable until Serve's health
    check and the GCS's (10 missed checks, 3 s apart) give it up and a replacement runs on the
    new node, 20-30 s here, longer than request_timeout_s: requests meanwhile end as 503.
    """
    result = node_loss(
        cluster,
        graph["base"],
        node=node,
        role=node,
        how=how,
        down_s=5,
        request_timeout_s=REQUEST_TIMEOUT_S,
        recover_timeout_s=240,
    )
    # the whole record (Serve's replica states over time, the answers per second) for a look afterwards
    (artifacts / f"cluster-loss-{node}-{how}.json").write_text(json.dumps(result, indent=1))
    check_node_loss(result, role=node, how=how)
    # and the whole graph is healthy again, with every stage where the YAML puts it
    cluster.wait_running(timeout_s=120)
    _placed(cluster.placement())
    with httpx.Client(base_url=graph["base"], timeout=60, trust_env=False) as client:
        assert client.post("/v1/translate", json={"text": "Back again."}).status_code == 200


def test_real_models(cluster: LocalCluster, port: int, tmp_path: Path) -> None:
    """configs/cluster.yaml as it is (backend auto) on the same cluster, with the prepared offline models."""
    from graph.auto import resolve_graph
    from graph.yaml_files import load_app_args

    try:
        info = resolve_graph(load_app_args(CONFIG)[0].args).to_dict()
    except HayakuError as exc:
        pytest.skip(f"configs/cluster.yaml's auto stages find no real model here ({exc}); run: hayaku models prepare")
    cfg = read_yaml(CONFIG)
    cfg["http_options"] = {**cfg["http_options"], "port": port}
    path = write_config(cfg, tmp_path / "cluster.yaml")
    cluster.deploy(path)
    # the translator loads a 1.5B model on a 2-core machine shared with the rest of the cluster
    cluster.wait_running(timeout_s=900)
    _placed(cluster.placement())
    deadline = time.monotonic() + 300
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300, trust_env=False) as client:
        while True:
            r = client.post("/v1/speech-translate", json={"text": "Hello, how are you today?", "response": "json"})
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(5)
    assert r.status_code == 200, r.text
    body = r.json()
    assert any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in body["translation"]), body
    samples, _ = decode_wav(base64.b64decode(body["audio_base64"]))
    assert rms(samples) > 0.001
    assert body["translator"]["backend"] == info["translator"]["backend"]
