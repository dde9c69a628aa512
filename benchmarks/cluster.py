"""``hayaku bench cluster``: the hayaku graph on a local multi-node Ray cluster.

    flock /tmp/hayaku-bench.lock hayaku bench cluster      # scaling, autoscaling, node loss
    hayaku bench cluster --skip-loss                        # scaling and autoscaling only

The cluster is the one scripts/cluster.sh makes with Ray's own ``ray start`` (a head, worker
nodes with the custom resources translate_node / speak_node, loopback addresses, its own temp
dir and auth token); ``LocalCluster`` (benchmarks/cluster_nodes.py) drives that script and reads
the cluster through Ray's own interfaces: the state API (nodes, replica actors and where they
run), Serve's REST API (application status, ``serve deploy``), and each node's Prometheus
endpoint (Serve's per-replica request counter). The graph is configs/cluster.yaml with its
stages switched to the synthetic echo translator and tone speaker, placement and autoscaling
kept: no models (benchmarks/cluster_graph.py). This module runs the parts and writes the report.

- scaling: a head, two translate_node workers and a speak_node worker. Echo burns ``--work-ms``
  of CPU per call, translator batching is off (one backend call per request), concurrency 16 on
  /v1/translate, Translator num_replicas 1 vs 2, interleaved A B A B. What each replica did comes
  from Serve's own ``ray_serve_deployment_request_counter``.
- autoscaling: the YAML's ``autoscaling_config`` as it is (min 1, max 2, target_ongoing_requests)
  under the same load: when the second replica ran, throughput before and after.
- node loss: back to one translate node; /v1/speech-translate at concurrency 4 while the
  speaker's node is stopped (SIGTERM: Ray drains it) and then the translator's node is killed
  (SIGKILL to all of its processes, like a crash); each returns after ``--down-s``. Counted:
  requests started during the loss and how they ended (200, 503, anything else), the time from
  the loss to the first error and from the node's return to the first success, and where the
  replacement replica runs, and the evidence that the node and the stage on it were really gone
  (benchmarks/cluster_loss.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.cluster_graph import autoscaling, scaling, synthetic_config, translator_deployment, write_config
from benchmarks.cluster_loss import node_loss
from benchmarks.cluster_nodes import (
    CONFIG,
    RAY_CLI,
    SCRIPT,
    SERVE_CLI,
    ClusterError,
    LocalCluster,
    Replica,
    free_port,
    placement_problems,
    progress,
)
from benchmarks.common import RESULTS, machine, markdown_table, write_result

#: what other modules and the tests import from here (the parts live in cluster_nodes, _graph, _loss)
__all__ = [
    "CONFIG",
    "RAY_CLI",
    "SCRIPT",
    "SERVE_CLI",
    "ClusterError",
    "LocalCluster",
    "Replica",
    "autoscaling",
    "free_port",
    "main",
    "node_loss",
    "placement_problems",
    "report",
    "scaling",
    "synthetic_config",
    "translator_deployment",
    "write_config",
]


# -- the report ----------------------------------------------------------------------------------------


def _chart(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = data.get("node_loss") or []
    fig, axes = plt.subplots(1, 1 + len(losses), figsize=(4.5 * (1 + len(losses)), 3.8), squeeze=False)
    ax = axes[0][0]
    sc = data.get("scaling")
    if sc:
        rows = sc["rows"]
        ax.bar([str(r["replicas"]) for r in rows], [r["throughput_rps"] for r in rows], color=["#888", "#37a"])
        ax.set(
            xlabel="translator replicas", ylabel="requests/s", title=f"concurrency 16, echo work_ms={sc['work_ms']:g}"
        )
    for ax, loss in zip(axes[0][1:], losses, strict=True):
        tl = loss["timeline"]
        ts = [r["t"] for r in tl]
        ax.plot(ts, [r.get("200", 0) for r in tl], label="200")
        ax.plot(ts, [r.get("503", 0) for r in tl], label="503")
        other = [sum(v for k, v in r.items() if k not in ("t", "200", "503")) for r in tl]
        if any(other):
            ax.plot(ts, other, label="other")
        for mark, color, style in (
            ("loss", "r", "--"),
            ("gone", "k", "-."),
            ("back", "g", "--"),
            ("recovered", "b", ":"),
        ):
            if loss["marks"].get(mark) is not None:
                ax.axvline(loss["marks"][mark], color=color, linestyle=style, linewidth=1, label=mark)
        ax.set(xlabel="s", ylabel="answers/s", title=f"{loss['how']} {loss['node']} node")
        ax.legend(fontsize=7)
    fig.suptitle(f"hayaku on a local 3-4 node Ray cluster; {machine()}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def report(data: dict[str, Any], argv: Sequence[str]) -> Path:
    """Writes benchmarks/results/cluster.md, .json and .png."""
    parts = []
    sc = data.get("scaling")
    if sc:
        parts.append(
            "### Scaling: 1 vs 2 translator replicas on two translate nodes (`max_replicas_per_node: 1`)\n\n"
            + markdown_table(
                [
                    "translator replicas",
                    "throughput req/s",
                    "p50 ms",
                    "p99 ms",
                    "requests",
                    "ok",
                    "errors",
                    "nodes used",
                    "share per replica (last round)",
                ],
                [
                    [
                        r["replicas"],
                        r["throughput_rps"],
                        r["p50_ms"],
                        r["p99_ms"],
                        r["requests"],
                        r["ok"],
                        sum(r["errors"].values()),
                        len(r["nodes"]),
                        " / ".join(f"{x:.2f}" for x in r["per_replica_share"]),
                    ]
                    for r in sc["rows"]
                ],
            )
            + f"\n\n2 replicas vs 1: **{sc['ratio_2_vs_1']:.2f}x** (median of {len(sc['runs']) // 2} interleaved "
            f"rounds each; echo burns {sc['work_ms']:g} ms of CPU per request, batching off). Per run:\n\n"
            + markdown_table(
                ["round", "replicas", "req/s", "p50 ms", "requests per replica (node)"],
                [
                    [
                        x["round"],
                        x["replicas"],
                        x["throughput_rps"],
                        x["p50_ms"],
                        ", ".join(f"{v['requests']} ({v['node']})" for v in x["per_replica"].values()),
                    ]
                    for x in sc["runs"]
                ],
            )
        )
    au = data.get("autoscaling")
    if au:
        parts.append(
            "### Autoscaling (the YAML's autoscaling_config)\n\n"
            + markdown_table(
                ["autoscaling_config", "second replica running after s", "req/s before", "req/s after", "statuses"],
                [
                    [
                        json.dumps(au["autoscaling_config"]),
                        au["second_replica_running_s"],
                        au["throughput_before_rps"],
                        au["throughput_after_rps"],
                        json.dumps(au["statuses"]),
                    ]
                ],
            )
        )
    losses = data.get("node_loss") or []
    if losses:
        parts.append(
            "### Node loss under load\n\n"
            + markdown_table(
                [
                    "node",
                    "how",
                    "sent during loss",
                    "200",
                    "503",
                    "other",
                    "first error after loss s",
                    "node start s",
                    "recovered after node back s",
                    "outage s",
                    "no replica s",
                    "200 while node away",
                    "replacement on a new node",
                ],
                [
                    [
                        x["node"],
                        x["how"],
                        x["sent_during_loss"],
                        x["answered_200"],
                        x["answered_503"],
                        x["other"],
                        x["first_error_after_loss_s"],
                        x["node_start_s"],
                        x["recovered_after_node_back_s"],
                        x["outage_s"],
                        # older results lack the evidence fields
                        round(sum(b - a for a, b in x.get("serving_gaps") or []), 1),
                        x.get("answered_200_while_node_away", "?"),
                        bool(x["replicas_after"])
                        and {r["node_id"] for r in x["replicas_after"]}.isdisjoint(
                            r["node_id"] for r in x["replicas_before"]
                        ),
                    ]
                    for x in losses
                ],
            )
        )
    notes = (
        f"`hayaku bench cluster {' '.join(argv)}` on a local cluster made by scripts/cluster.sh (Ray's `ray start`, "
        "all nodes on this one machine, so they share its 2 cores: more replicas cannot add compute here, the "
        "figures show placement, spreading and recovery rather than speed-up). Graph: configs/cluster.yaml with the "
        "synthetic echo translator and tone speaker, placement kept. Per-replica counts are Serve's own "
        "`ray_serve_deployment_request_counter` from each node's metrics endpoint. Node loss: `stop` is SIGTERM to "
        "the node's `ray start` (Ray drains it), `kill` is SIGKILL to all of its processes at once (a crash: the GCS "
        "notices after its health checks fail: scripts/cluster.sh lets a node miss 10 checks 3 s apart, twice Ray's "
        "default, so that a raylet starved of CPU on this shared machine is not declared dead; Serve replaces the "
        "lost replicas once the node is declared dead, about 30 s after the kill). A drained node keeps answering "
        "until shortly before the drain deadline: Serve starts a replacement at once, which waits for a node with "
        "the stage's resource, and stops the old replica about 10 s after the SIGTERM. 'no replica s': how long "
        "Serve listed no replica of the stage that takes requests (polled each second); '200 while node away': "
        "answers 200 between the node's last process exiting and the new node's start (0: nothing else held the "
        "stage). While a stage has no replica, requests wait in the ingress until `request_timeout_s` "
        "(10 s here): they succeed if a replacement comes up in time, else get a JSON 503 (`timeout`); a replica "
        "that dies under a request gives a 503 with Retry-After. 'sent during loss': requests started from the "
        "loss until the first success of a request started after the node was gone; 'outage': that span."
    )
    path = write_result(
        "cluster", "Multi-node cluster: scaling, autoscaling, node loss", "\n\n".join(parts), notes, data
    )
    _chart(data, RESULTS / "cluster.png")
    return path


def main(argv: list[str] | None = None) -> int:
    """``hayaku bench cluster``: see the module docstring."""
    p = argparse.ArgumentParser(
        prog="hayaku bench cluster", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--work-ms", type=float, default=20.0, help="CPU ms the echo translator burns per request (20)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds of 1 vs 2 replicas (default 2)")
    p.add_argument("--requests", type=int, default=400, help="requests per scaling run (default 400)")
    p.add_argument("--seconds", type=float, default=30.0, help="time bound per scaling run (default 30)")
    p.add_argument("--autoscale-seconds", type=float, default=45.0, help="load time of the autoscaling run (45)")
    p.add_argument("--down-s", type=float, default=15.0, help="how long a lost node stays away (default 15)")
    p.add_argument("--skip-scaling", action="store_true", help="no scaling or autoscaling runs")
    p.add_argument("--skip-loss", action="store_true", help="no node-loss runs")
    p.add_argument("--cluster-dir", help="HAYAKU_CLUSTER_DIR for the cluster (default: a new temp dir)")
    ns = p.parse_args(argv)
    argv_shown = argv if argv is not None else sys.argv[1:]

    tmp = Path(tempfile.mkdtemp(prefix="hkb-", dir="/tmp"))
    cluster = LocalCluster(ns.cluster_dir or tmp / "c")
    port = free_port()
    data: dict[str, Any] = {"machine": machine()}
    progress(f"starting a local cluster in {cluster.directory} (head, translate, speak) ...")
    cluster.up()
    try:
        if not ns.skip_scaling:
            progress("adding a second translate node")
            cluster.start_node("translate", "translate2")
            data["scaling"] = scaling(
                cluster, tmp, port, work_ms=ns.work_ms, rounds=ns.rounds, requests=ns.requests, seconds=ns.seconds
            )
            progress("autoscaling run")
            data["autoscaling"] = autoscaling(cluster, tmp, port, work_ms=ns.work_ms, seconds=ns.autoscale_seconds)
            cluster.stop_node("translate2")
        if not ns.skip_loss:
            timeout = 10.0
            cfg = write_config(synthetic_config(port, request_timeout_s=timeout), tmp / "loss.yaml")
            cluster.deploy(cfg)
            cluster.wait_running()
            base = f"http://127.0.0.1:{port}"
            data["node_loss"] = [
                node_loss(
                    cluster, base, node="speak", role="speak", how="stop", down_s=ns.down_s, request_timeout_s=timeout
                ),
                node_loss(
                    cluster,
                    base,
                    node="translate",
                    role="translate",
                    how="kill",
                    down_s=ns.down_s,
                    request_timeout_s=timeout,
                ),
            ]
            for x in data["node_loss"]:
                progress(
                    f"{x['how']} {x['node']}: {x['sent_during_loss']} sent during the loss, 200 {x['answered_200']}, "
                    f"503 {x['answered_503']}, other {x['other']}; recovered {x['recovered_after_node_back_s']} s "
                    "after the node came back"
                )
    finally:
        with_errors = []
        try:
            cluster.serve("shutdown", "-y")
        except Exception as exc:  # the cluster goes down next anyway; say why Serve did not stop cleanly
            with_errors.append(str(exc))
        cluster.down()
        for e in with_errors:
            progress(f"serve shutdown: {e[:300]}")
    path = report(data, argv_shown)
    print(path.read_text())
    print(f"wrote {path}, {RESULTS / 'cluster.json'} and {RESULTS / 'cluster.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
