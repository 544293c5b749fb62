"""`kubectl get` tables: the server answers Table requests with the API server's columns for the common kinds."""

from __future__ import annotations

import threading
import time
from typing import Any

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def test_a_table_list_has_the_deployment_printer_columns(api: Any, m: Any) -> None:
    api.post("/apis/apps/v1/namespaces/default/deployments", m.deployment(replicas=2))
    table = api.get("/apis/apps/v1/namespaces/default/deployments", headers={"Accept": TABLE}).json()
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0] == [
        "Name", "Ready", "Up-to-date", "Available", "Age"]
    (row,) = table["rows"]
    assert row["cells"][:4] == ["web", "0/2", 0, 0]
    assert row["object"]["kind"] == "PartialObjectMetadata" and row["object"]["metadata"]["name"] == "web"


def test_kubectl_get_prints_server_side_columns(kubectl: Any, api: Any, m: Any) -> None:
    api.post("/api/v1/namespaces/default/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
    output = kubectl("get", "service", "web").stdout.splitlines()
    assert output[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert output[1].split()[:2] == ["web", "ClusterIP"] and "80/TCP" in output[1]
    assert kubectl("get", "namespaces").stdout.splitlines()[0].split() == ["NAME", "STATUS", "AGE"]


def test_kubectl_get_watch_prints_changes_once_with_one_header(kubectl: Any, api: Any, m: Any) -> None:
    api.post("/api/v1/namespaces/default/configmaps", m.configmap("a"))

    def change() -> None:
        time.sleep(0.5)
        api.post("/api/v1/namespaces/default/configmaps", m.configmap("b"))

    thread = threading.Thread(target=change)
    thread.start()
    result = kubectl("get", "configmaps", "--watch", "--request-timeout=2s")
    thread.join()
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "DATA", "AGE"]
    assert [line.split()[0] for line in lines[1:]] == ["a", "b"]


def test_custom_resources_print_their_additional_printer_columns(kubectl: Any, api: Any, m: Any) -> None:
    crd = m.crd()
    crd["spec"]["versions"][0]["additionalPrinterColumns"] = [
        {"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]
    api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    api.post("/apis/example.com/v1/namespaces/default/widgets",
             {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 3}})
    lines = kubectl("get", "widgets").stdout.splitlines()
    assert lines[0].split() == ["NAME", "SIZE", "AGE"]
    assert lines[1].split()[:2] == ["w", "3"]
    crds = kubectl("get", "crd").stdout.splitlines()
    assert crds[0].split() == ["NAME", "CREATED", "AT"]
