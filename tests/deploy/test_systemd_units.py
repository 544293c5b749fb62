"""deploy/systemd: the units pass `systemd-analyze verify`, and keep the hardening they promise.

`verify` checks that each command exists and is executable, so it runs on copies whose
/usr/local/bin/tidegate is this checkout's real `tidegate`; any warning it prints (an unknown key,
a value it cannot parse, an unknown syscall group: all "ignoring", exit status 0) fails the test.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from providers.sealed import SERVICE_CAPABILITIES

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
NAMES = ["tidegate-serve.service", "tidegate-worker@.service", "tidegate-beat.service"]
INSTALLED = "/usr/local/bin/tidegate"
# Namespaces, mounts and `lo` of a render's netns (bubblewrap), switching to the runner (setpriv),
# handing a run's directory over and back, killing a timed-out run.
SEAL_CAPABILITIES = {"CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_DAC_OVERRIDE",
                     "CAP_FOWNER", "CAP_KILL"}


def directives(name: str) -> dict[str, list[str]]:
    """Every value of every [Service] key, in order (systemd keys repeat)."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in (UNITS / name).read_text().splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == "Service" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def one(values: dict[str, list[str]], key: str) -> str:
    assert len(values.get(key, [])) == 1, f"{key}: {values.get(key)}"
    return values[key][0]


@pytest.mark.parametrize("name", NAMES)
def test_systemd_analyze_verify_passes(tmp_path: Path, name: str) -> None:
    assert shutil.which("systemd-analyze"), "systemd-analyze (Debian: systemd; scripts/setup.sh --dev installs it)"
    tidegate = Path(sys.executable).parent / "tidegate"
    assert tidegate.is_file(), "the project's `tidegate` entry point"
    text = (UNITS / name).read_text()
    assert INSTALLED in text
    copy = tmp_path / name
    copy.write_text(text.replace(INSTALLED, str(tidegate)))
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(copy)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0 and done.stderr.strip() == "" and done.stdout.strip() == "", done.stderr + done.stdout


def test_verify_fails_on_what_it_should(tmp_path: Path) -> None:
    """The check above is real: a missing binary fails it, a mistyped key makes it print."""
    text = (UNITS / "tidegate-beat.service").read_text()
    missing = tmp_path / "missing.service"
    missing.write_text(text.replace(INSTALLED, str(tmp_path / "no-such-tidegate")))
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(missing)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode != 0
    typo = tmp_path / "typo.service"
    typo.write_text(text.replace(INSTALLED, str(Path(sys.executable).parent / "tidegate"))
                    .replace("ProtectSystem=strict", "ProtectSytem=strict"))
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(typo)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert "ProtectSytem" in done.stderr


def test_units_parse_as_ini_and_name_the_shared_settings_file() -> None:
    for name in NAMES:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string((UNITS / name).read_text())
        assert {"Unit", "Service", "Install"} <= set(parser.sections())
        values = directives(name)
        assert values["EnvironmentFile"][0] == "/etc/tidegate/tidegate.env"
        assert "TIDEGATE_DATA_DIR=" in " ".join(values["Environment"])


@pytest.mark.parametrize("name", ["tidegate-serve.service", "tidegate-beat.service"])
def test_serve_and_beat_run_unprivileged_and_hardened(name: str) -> None:
    values = directives(name)
    assert one(values, "User") == "tidegate" and one(values, "Group") == "tidegate"
    assert one(values, "NoNewPrivileges") == "yes"
    assert one(values, "CapabilityBoundingSet") == "" and one(values, "AmbientCapabilities") == ""
    assert one(values, "ProtectSystem") == "strict" and one(values, "ProtectHome") == "yes"
    assert one(values, "PrivateTmp") == "yes" and one(values, "PrivateDevices") == "yes"
    assert one(values, "RestrictNamespaces") == "yes" and one(values, "RestrictSUIDSGID") == "yes"
    data = one(values, "Environment").removeprefix("TIDEGATE_DATA_DIR=")
    assert one(values, "ReadWritePaths") == data
    assert data.removeprefix("/var/lib/") in one(values, "StateDirectory").split()
    assert one(values, "StateDirectoryMode") == "0700" and one(values, "UMask") == "0077"
    assert "MemoryMax" in values


def test_the_worker_is_root_with_only_the_seal_capabilities() -> None:
    values = directives("tidegate-worker@.service")
    assert one(values, "User") == "root"
    bounding = {cap for line in values["CapabilityBoundingSet"] for cap in line.split()}
    assert bounding == SEAL_CAPABILITIES | set(SERVICE_CAPABILITIES)
    assert "CAP_SYS_PTRACE" not in bounding and "CAP_SYS_MODULE" not in bounding and "CAP_MKNOD" not in bounding
    # What it keeps.
    assert one(values, "NoNewPrivileges") == "yes"
    assert one(values, "ProtectSystem") == "strict" and one(values, "ProtectHome") == "yes"
    assert one(values, "PrivateTmp") == "yes" and one(values, "PrivateDevices") == "yes"
    assert one(values, "ProtectKernelModules") == "yes" and one(values, "ProtectKernelTunables") == "yes"
    assert one(values, "SystemCallArchitectures") == "native"
    assert {"@debug", "@module", "@keyring", "@reboot", "@raw-io"} <= set(
        one(values, "SystemCallFilter").removeprefix("~").split())
    # Namespaces bubblewrap builds, and never a user namespace.
    assert set(one(values, "RestrictNamespaces").split()) == {"mnt", "pid", "ipc", "uts", "net", "cgroup"}
    assert "ProtectHostname" not in values  # each Terraform run sets its own host name
    # Its own data dir, with HOME inside it (both hidden from sealed runs), and a warm shutdown.
    environment = dict(item.split("=", 1) for item in one(values, "Environment").split())
    assert environment["TIDEGATE_DATA_DIR"] == one(values, "ReadWritePaths") == "/var/lib/tidegate-worker/%i"
    assert environment["HOME"].startswith(environment["TIDEGATE_DATA_DIR"] + "/")
    assert "--name tidegate-%i@" in one(values, "ExecStart")
    assert one(values, "KillMode") == "mixed" and one(values, "TimeoutStopSec") == "30min"


def test_the_worker_sizes_its_postgresql_pool_as_the_readme_recommends() -> None:
    """deploy/README.md, "Sizing": 2 + 1 per worker process; serve keeps the defaults (5 + 10)."""
    worker = one(directives("tidegate-worker@.service"), "Environment")
    environment = dict(item.split("=", 1) for item in worker.split())
    assert (environment["TIDEGATE_DB_POOL_SIZE"], environment["TIDEGATE_DB_MAX_OVERFLOW"]) == ("2", "1")
    assert "TIDEGATE_DB_POOL_SIZE" not in one(directives("tidegate-serve.service"), "Environment")
