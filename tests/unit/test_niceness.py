"""The translator replica's CPU priority: lowered in its own process (every thread), left alone when colocated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("ray", reason="the replicas are Ray Serve deployments: pip install 'hayaku[serve]'")
if not os.path.isdir("/proc/self/task"):
    pytest.skip("per-thread niceness is read from Linux's /proc", allow_module_level=True)

# Run in a child: niceness only goes down without privileges, and this test process must keep its own.
CHILD = textwrap.dedent(
    """
    import json, logging, os, sys, threading
    from deployments.translator import TranslatorProcess, TranslatorReplica
    from graph.config import parse_args

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    start_nice, drop_user, cls_name, nice = json.loads(sys.argv[1])
    if drop_user and os.geteuid() == 0:
        os.setuid(65534)  # no CAP_SYS_NICE from here on
    for tid in os.listdir("/proc/self/task"):  # imports may have started threads
        os.setpriority(os.PRIO_PROCESS, int(tid), start_nice)
    stop = threading.Event()
    before = threading.Thread(target=stop.wait)
    before.start()
    stage = parse_args({"translator": {"backend": "echo", "nice": nice}}).translator.model_dump()
    replica = {"TranslatorProcess": TranslatorProcess, "TranslatorReplica": TranslatorReplica}[cls_name](
        stage, 2000, "en", "ja"
    )
    after = threading.Thread(target=stop.wait)
    after.start()
    def nice_of(tid):
        with open(f"/proc/self/task/{tid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[16])
    out = {str(t): nice_of(t) for t in os.listdir("/proc/self/task")}
    print(json.dumps({"threads": out, "live": replica.describe()["nice"]}))
    stop.set()
    """
)


def _child(start_nice: int, cls: str, nice: int | None, drop_user: bool = False) -> tuple[dict[str, int], int, str]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps([start_nice, drop_user, cls, nice])],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=os.getcwd(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return out["threads"], out["live"], done.stderr


def test_own_process_lowers_every_thread_before_and_after_loading() -> None:
    threads, live, _ = _child(15, "TranslatorProcess", 19)
    assert len(threads) >= 3  # main + the threads started before and after the replica
    assert set(threads.values()) == {19}, threads
    assert live == 19  # GET /v1/graph shows it


def test_colocated_replica_and_nice_none_leave_the_process_alone() -> None:
    threads, live, _ = _child(15, "TranslatorReplica", 19)
    assert set(threads.values()) == {15} and live == 15
    threads, live, _ = _child(15, "TranslatorProcess", None)
    assert set(threads.values()) == {15} and live == 15


def test_a_higher_priority_without_the_capability_warns_and_keeps_running() -> None:
    # As root the child becomes nobody first, so it lacks CAP_SYS_NICE either way.
    threads, live, err = _child(19, "TranslatorProcess", 0, drop_user=True)
    assert set(threads.values()) == {19} and live == 19
    assert "needs CAP_SYS_NICE" in err and "keeping 19" in err
