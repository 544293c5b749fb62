#!/usr/bin/env bash
# The test command (README, CI): set up a fresh machine, then lint, type-check, check the
# architecture contract and run the whole pytest suite. Extra arguments go to pytest. Each step
# prints its duration, and pytest its seconds per suite, so CI's budget stays visible.
set -euo pipefail
cd "$(dirname "$0")/.."
step() {
  local name=$1 started=$SECONDS; shift
  echo "== $name"
  "$@"
  echo "== $name: $((SECONDS - started)) s"
}
step "setup" bash scripts/setup.sh --dev

export TIDEGATE_DATA_DIR=${TIDEGATE_DATA_DIR:-$(mktemp -d -t tidegate-test-XXXXXX)}
source scripts/terraform-env.sh
echo "terraform provider mirror: ${TIDEGATE_TERRAFORM_PLUGIN_DIRS:-none found}"
step "ruff" .venv/bin/ruff check .
step "mypy --strict" .venv/bin/mypy
step "import-linter" .venv/bin/lint-imports
step "pytest" .venv/bin/pytest "$@"
