"""The official Python client's end-to-end suite against the Kubernetes API emulator (issue 18).

    .venv/bin/python scripts/kube_e2e.py [SUITE] [--ref REF]

SUITE is a kubernetes-client/python checkout, a bare clone of it, or any directory holding
`kubernetes/e2e_test`; without it the suite is fetched with git from GitHub at REF (master). The
suite is not in the PyPI packages, and none of its code is kept here.

The suite runs with the client installed in .venv (the project's pin, kubernetes==37.0.1), not
the checkout's: a conftest adds the copied `e2e_test` to the installed `kubernetes` package. The
emulator is `tidegate sandbox kube`, which the suite finds through KUBECONFIG. Prints the counts
and every failure; exits 1 when a test fails that does not need a kubelet.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = "https://github.com/kubernetes-client/python"
SUITE_PATH = "kubernetes/e2e_test"
# Only a kubelet (a node that runs the pod) can pass these: exec, attach, exit codes, port-forward.
NEEDS_KUBELET = frozenset({
    "test_client.TestClient.test_pod_apis", "test_client.TestClient.test_pod_exec_close_channel",
    "test_client.TestClient.test_exit_code", "test_client.TestClient.test_portforward_raw",
    "test_client.TestClient.test_portforward_http",
})
CONFTEST = '''\
import os
import kubernetes
kubernetes.__path__.append(os.path.join(os.path.dirname(__file__), "kubernetes"))
'''


def copy_suite(source: Path | None, ref: str, work: Path) -> str:
    """Put `kubernetes/e2e_test` under `work`; returns where it came from, for the report."""
    target = work / SUITE_PATH
    if source is not None and (source / SUITE_PATH).is_dir():
        shutil.copytree(source / SUITE_PATH, target)
        return str(source)
    git_dir = source if source is not None else _clone(ref, work / "upstream.git")
    commit = subprocess.run(["git", "--git-dir", str(git_dir), "rev-parse", ref], capture_output=True, text=True,
                            check=True).stdout.strip()
    archive = subprocess.run(["git", "--git-dir", str(git_dir), "archive", commit, SUITE_PATH], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "x", "-C", str(work)], input=archive, check=True)
    return f"{git_dir} @ {commit}"


def _clone(ref: str, into: Path) -> Path:
    subprocess.run(["git", "clone", "--bare", "--depth", "1", "--filter=blob:none", "--branch", ref, UPSTREAM,
                    str(into)], check=True)
    return into


def start_emulator(work: Path) -> tuple[subprocess.Popen[bytes], Path]:
    kubeconfig = work / "kubeconfig"
    server = subprocess.Popen([str(ROOT / ".venv" / "bin" / "tidegate"), "sandbox", "kube", "--port", "0",
                               "--kubeconfig", str(kubeconfig)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not kubeconfig.exists():
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the emulator did not start")
        time.sleep(0.1)
    return server, kubeconfig


def run_suite(work: Path, kubeconfig: Path) -> Path:
    (work / "conftest.py").write_text(CONFTEST)
    report = work / "report.xml"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfs", "--rootdir", str(work),
                    f"--junitxml={report}", SUITE_PATH], cwd=work, env=env, check=False)
    return report


def outcomes(report: Path) -> dict[str, str]:
    """`module.Class.test` -> passed | failed | skipped."""
    results: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname', '').rsplit('e2e_test.', 1)[-1]}.{case.get('name')}"
        failed = case.find("failure") is not None or case.find("error") is not None
        results[name] = "failed" if failed else "skipped" if case.find("skipped") is not None else "passed"
    return results


def summarize(results: dict[str, str], origin: str) -> int:
    counts = {state: sum(1 for s in results.values() if s == state) for state in ("passed", "failed", "skipped")}
    failed = sorted(name for name, state in results.items() if state == "failed")
    unexpected = [name for name in failed if name not in NEEDS_KUBELET]
    print(f"\nsuite: {origin}\nclient: kubernetes=={importlib.metadata.version('kubernetes')}")
    print(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    for name in failed:
        print(f"  failed: {name}{'' if name in NEEDS_KUBELET else '   <- does not need a kubelet'}")
    return 1 if unexpected else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suite", nargs="?", type=Path,
                        help="checkout, bare clone, or directory with kubernetes/e2e_test")
    parser.add_argument("--ref", help="commit or branch to take the suite from (default: the clone's HEAD, or "
                                      "master when cloning)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kube-e2e-") as tmp:
        work = Path(tmp)
        origin = copy_suite(args.suite, args.ref or ("HEAD" if args.suite is not None else "master"), work)
        server, kubeconfig = start_emulator(work)
        try:
            report = run_suite(work, kubeconfig)
        finally:
            server.terminate()
            server.wait(10)
        return summarize(outcomes(report), origin)


if __name__ == "__main__":
    sys.exit(main())
