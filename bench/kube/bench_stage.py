"""Benchmark: the Kubernetes stage syncing N objects to the API emulator over real HTTPS.

Times, against one fresh `KubeSandbox` (controllers on with a small delay):
- **plan (cold)** — discovery, a GET and a server-side apply dry run per object;
- **apply (first)** — dry-run validation of the whole set, then the ordered apply and the inventory;
- **plan + apply (second)** — the same set again: every object unchanged, no real write made;
- **drift** — `observe` after one object was scaled by hand (one DriftItem expected);
- **live drift latency** — from an out-of-band PATCH to its `DriftEvent` on the stage's watches
  (median of 20; issue 3's goal is within 2 s).
Prints a JSON line per phase and checks the second sync made zero non-dry-run writes.

Usage:
    .venv/bin/python bench/kube/bench_stage.py [--objects 1000]
"""

from __future__ import annotations

import argparse
import json
import queue
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from providers.kubernetes.client import KubeClient  # noqa: E402
from providers.kubernetes.schema import PlainManifest  # noqa: E402
from providers.kubernetes.stage import KubernetesStage, WorkloadSettings, WorkloadsInputs  # noqa: E402
from providers.kubernetes.watch import DriftEvent  # noqa: E402
from providers.stage import StageContext  # noqa: E402
from repo_schema.issues import Location  # noqa: E402
from sandbox.kube import KubeSandbox  # noqa: E402


def body(index: int) -> dict[str, Any]:
    name = f"app-{index:04d}"
    if index % 3 == 0:
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}},
                                      "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}}
    if index % 3 == 1:
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"index": str(index)}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=1000)
    args = parser.parse_args()
    manifests = [PlainManifest(body(i), Location("apps/bench/all.yaml", 1 + 10 * i)) for i in range(args.objects)]
    with tempfile.TemporaryDirectory() as tmp, KubeSandbox(controller_delay=0.05) as kube:
        kubeconfig = kube.write_kubeconfig(Path(tmp) / "kubeconfig")
        ctx = StageContext("bench", "rev", Path(tmp), Path(tmp),
                           spec=WorkloadsInputs({"bench": manifests},
                                                {"bench": WorkloadSettings("bench", namespace="bench")}),
                           settings={"kubeconfig_path": str(kubeconfig)})
        KubeClient.connect(path=kubeconfig).apply({"apiVersion": "v1", "kind": "Namespace",
                                                   "metadata": {"name": "bench"}})
        stage = KubernetesStage()

        def timed(label: str, fn: Any) -> Any:
            started = time.perf_counter()
            value = fn()
            print(json.dumps({"phase": label, "objects": args.objects,
                              "seconds": round(time.perf_counter() - started, 3)}))
            return value

        plan = timed("plan (cold)", lambda: stage.plan(ctx))
        result = timed("apply (first)", lambda: stage.apply(ctx, plan))
        assert result.succeeded, result.error
        kube.clear_requests()
        again = timed("plan (second)", lambda: stage.plan(ctx))
        assert not again.has_changes
        second = timed("apply (second)", lambda: stage.apply(ctx, again))
        assert second.succeeded, second.error
        writes = [w for w in kube.writes() if not w["dry_run"]]
        print(json.dumps({"check": "second sync real writes", "value": len(writes)}))
        assert writes == []
        client = KubeClient.connect(path=kubeconfig)
        client.resource("apps/v1", "Deployment").patch(name="app-0000", namespace="bench",
                                                       body={"spec": {"replicas": 3}},
                                                       content_type="application/merge-patch+json")
        drift = timed("observe (one drifted)", lambda: stage.observe(ctx))
        assert [(d.address, d.field) for d in drift] == [("apps/Deployment/bench/app-0000", "/spec/replicas")]
        events: queue.Queue[DriftEvent] = queue.Queue()
        watcher = stage.watch(ctx, events.put)
        latencies = []
        try:
            for round_ in range(20):
                changed = time.perf_counter()
                client.resource("v1", "ConfigMap").patch(name="app-0002", namespace="bench",
                                                         body={"data": {"index": f"hand-{round_}"}},
                                                         content_type="application/merge-patch+json")
                event = events.get(timeout=10)
                latencies.append(time.perf_counter() - changed)
                assert event.address == "/ConfigMap/bench/app-0002", event
        finally:
            watcher.stop()
        print(json.dumps({"phase": "live drift latency (median of 20, goal < 2 s)",
                          "seconds": round(statistics.median(latencies), 4),
                          "max": round(max(latencies), 4)}))


if __name__ == "__main__":
    main()
