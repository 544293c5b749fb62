#!/usr/bin/env bash
# The test command (README, CI): set up a fresh machine, then lint, type-check, check the
# architecture contract and run the whole pytest suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev

export TIDEGATE_DATA_DIR=${TIDEGATE_DATA_DIR:-$(mktemp -d -t tidegate-test-XXXXXX)}
source scripts/terraform-env.sh
echo "terraform provider mirror: ${TIDEGATE_TERRAFORM_PLUGIN_DIRS:-none found}"
echo "== ruff";          .venv/bin/ruff check .
echo "== mypy --strict"; .venv/bin/mypy
echo "== import-linter"; .venv/bin/lint-imports
echo "== pytest";        .venv/bin/pytest "$@"
