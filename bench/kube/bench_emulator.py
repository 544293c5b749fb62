"""Benchmark: the Kubernetes API emulator under the load of a 1,000-object sync, over real HTTPS.

Times, against one fresh `KubeSandbox` (controllers off, so only the API server works):
- **create** — 1,000 objects (Deployments, Services, ConfigMaps in turn) by POST;
- **apply** — server-side apply of the same 1,000 objects (`fieldManager=tidegate`): all no-ops;
- **dry-run** — server-side apply with `dryRun=All` of the 1,000 objects (a diff's cost);
- **list** — label-selected list of each kind, paged 500 at a time;
- **watch latency** — from an out-of-band PATCH to its event on an open label-selected watch (median of 50).
Reports requests per second and checks that the no-op applies bumped no resourceVersion.

Usage:
    .venv/bin/python bench/kube/bench_emulator.py [--objects 1000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sandbox.kube import KubeSandbox  # noqa: E402


def manifest(index: int) -> tuple[str, dict[str, Any]]:
    name = f"app-{index:04d}"
    labels = {"app.kubernetes.io/managed-by": "tidegate", "app": name}
    kind = index % 3
    if kind == 0:
        return "/apis/apps/v1/namespaces/default/deployments", {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
            "spec": {"selector": {"matchLabels": {"app": name}}, "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}}}}
    if kind == 1:
        return "/api/v1/namespaces/default/services", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": labels},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}}
    return "/api/v1/namespaces/default/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels},
        "data": {"index": str(index)}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=1000)
    args = parser.parse_args()
    with KubeSandbox(controller_delay=None) as kube:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {kube.token}"
        verify = str(kube.ca_file)
        objects = [manifest(i) for i in range(args.objects)]

        def timed(label: str, calls: list[tuple[str, str, Any, str]]) -> None:
            started = time.perf_counter()
            for method, path, body, ctype in calls:
                answer = session.request(method, kube.url + path, data=body, headers={"Content-Type": ctype},
                                         verify=verify, timeout=30)
                if answer.status_code >= 400:
                    raise SystemExit(f"{label}: {method} {path} -> {answer.status_code} {answer.text[:300]}")
            elapsed = time.perf_counter() - started
            print(f"{label:<10} {len(calls):>5} requests  {elapsed:7.2f} s  {len(calls) / elapsed:8.0f} req/s")

        timed("create", [("POST", path, json.dumps(body), "application/json") for path, body in objects])
        rv_before = kube.call(lambda: kube.state.store.rv)
        apply_calls = [("PATCH", f"{path}/{body['metadata']['name']}?fieldManager=tidegate&force=true",
                        yaml.safe_dump(body), "application/apply-patch+yaml") for path, body in objects]
        timed("apply", apply_calls)
        timed("apply*2", apply_calls)
        rv_after_first = kube.call(lambda: kube.state.store.rv)
        timed("dry-run", [(m, f"{p}&dryRun=All", b, c) for m, p, b, c in apply_calls])
        timed("list", [("GET", f"{path}?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dtidegate&limit=500", None,
                        "application/json") for path in {p for p, _ in objects}])
        print(f"resourceVersion: {rv_before} after create, {rv_after_first} after two applies and the dry runs "
              f"(the first apply takes ownership: {rv_after_first - rv_before} writes)")

        latencies: list[float] = []
        path, body = objects[2]
        name = body["metadata"]["name"]
        for round_ in range(50):
            got = threading.Event()
            rv = session.get(kube.url + path, verify=verify).json()["metadata"]["resourceVersion"]

            def watch(rv: str = rv, got: threading.Event = got) -> None:
                with session.get(kube.url + path, params={"watch": "true", "resourceVersion": rv,
                                                          "labelSelector": f"app={name}"},
                                 stream=True, verify=verify, timeout=30) as stream:
                    for line in stream.iter_lines():
                        if line:
                            got.set()
                            return

            thread = threading.Thread(target=watch, daemon=True)
            thread.start()
            time.sleep(0.02)
            started = time.perf_counter()
            session.patch(f"{kube.url}{path}/{name}", data=json.dumps({"data": {"round": str(round_)}}),
                          headers={"Content-Type": "application/merge-patch+json"}, verify=verify)
            got.wait(10)
            latencies.append(time.perf_counter() - started)
            thread.join(5)
        print(f"watch latency: median {statistics.median(latencies) * 1000:.1f} ms, "
              f"max {max(latencies) * 1000:.1f} ms (PATCH sent -> event read, {len(latencies)} rounds)")


if __name__ == "__main__":
    main()
