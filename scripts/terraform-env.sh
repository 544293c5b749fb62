# Sourced by the test and demo commands: point Tidegate at the Terraform provider mirror this
# machine carries, found once by searching the filesystem (no path is written into the code).
# An exported TIDEGATE_TERRAFORM_PLUGIN_DIRS wins. `find` exits non-zero when a file vanishes
# under it (other processes' temp dirs), which must not stop a `set -e -o pipefail` caller.
if [ -z "${TIDEGATE_TERRAFORM_PLUGIN_DIRS:-}" ]; then
  TIDEGATE_TERRAFORM_PLUGIN_DIRS=$( (find / -maxdepth 9 \( -path /proc -o -path /sys -o -name .terraform -o -path "$PWD/.venv" \) -prune \
      -o -type f -name 'terraform-provider-aws_*' -path '*/registry.terraform.io/hashicorp/aws/*' -print 2>/dev/null \
    || true) | sed 's#/registry.terraform.io/hashicorp/aws/.*##' | sort -u | paste -sd: - || true)
  export TIDEGATE_TERRAFORM_PLUGIN_DIRS
fi
if ! command -v terraform >/dev/null 2>&1; then
  echo "terraform is not on PATH: the Terraform stage needs it (this machine image ships it)" >&2
fi
