#!/usr/bin/env bash
# The main job: set up this machine, then take examples/infra-repo through every stage that exists
# today. Later issues extend this until it reconciles the example end to end (`tidegate up`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TIDEGATE_DATA_DIR=${TIDEGATE_DATA_DIR:-$PWD/.data}
source scripts/terraform-env.sh
repo=examples/infra-repo
tg=.venv/bin/tidegate

echo "== 1. validate $repo (schema, cross-references, rendering, Kubernetes 1.37 schemas)"
$tg validate "$repo"
for env in staging production; do
  for stage in infrastructure configuration workloads; do
    echo
    echo "== 2. render $env / $stage"
    $tg render --repo "$repo" --env "$env" --stage "$stage"
  done
done
echo
echo "== 3. plan staging / infrastructure against a throwaway moto AWS (real terraform, offline providers)"
$tg plan staging --repo "$repo" --stage infrastructure --sandbox

cat <<'TEXT'

== 4. what happens next (stages still being built; see README "Status")
For each environment in dependsOn order (staging, then production):
  infrastructure  terraform init/plan with the tfvars above against the S3 backend (moto in the
                  sandbox), saved plan file, then apply -> outputs: cluster endpoint, CA,
                  kubeconfig (sensitive, stored encrypted), nodes.
  configuration   ansible-playbook site.yml with the extra vars above, inventory from the
                  Terraform `nodes` output, --check --diff for the plan, then the real run.
  workloads       server-side apply of the manifests above in kind order (CRDs first), wait for
                  health, record the inventory for pruning.
production waits for an approval from group:platform-leads before it applies.
TEXT
