"""The typed config repo format: `environments/*.yaml` (kind Environment) and `tidegate.yaml`.

Field names are camelCase in YAML, as in Kubernetes, and snake_case in Python. Models are strict:
an unknown field or a value of the wrong type is an error, never silently coerced ("3" is not 3,
"yes" is not true), because a config repo that means something other than it says is worse than
one that is rejected.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from repo_schema.durations import Duration

API_VERSION = "tidegate.dev/v1alpha1"

Name = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=63,
        description="A DNS-1123 label: lower-case letters, digits and '-'.",
    ),
]
RepoPath = Annotated[
    str,
    Field(min_length=1, description="A path relative to the config repo root; must stay inside it."),
]
JsonPointer = Annotated[
    str,
    Field(pattern=r"^(/([^~/]|~[01])*)+$", description="An RFC 6901 JSON pointer, e.g. /spec/replicas."),
]
Approver = Annotated[
    str,
    Field(pattern=r"^(user|group):[A-Za-z0-9._@-]+$", description="`user:NAME` or `group:NAME`."),
]


class Model(BaseModel):
    """Shared settings: camelCase aliases, no unknown fields, no type coercion, immutable."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        strict=True,
        frozen=True,
    )


class Metadata(Model):
    name: Name
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class TerraformOutputRef(Model):
    """Takes a value from an output of this environment's infrastructure stage."""

    terraform_output: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")]


class SecretRef(Model):
    """Names a secret without containing it: a secret registered with Tidegate, or an env var."""

    secret: str | None = None
    env: Annotated[str | None, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")] = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.secret is None) == (self.env is None):
            raise ValueError("set exactly one of `secret` or `env`")
        return self


SECRET_REF = "secretRef"
SECRET_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$"


def secret_ref(value: Any) -> str | None:
    """The stored secret a variable's value names (`{secretRef: NAME}`), or None for a plain value."""
    if isinstance(value, dict) and SECRET_REF in value:
        return str(value[SECRET_REF])
    return None


def _secret_refs_allowed(variables: dict[str, Any]) -> dict[str, Any]:
    for name, value in variables.items():
        if isinstance(value, dict) and SECRET_REF in value and not _well_formed_ref(value):
            raise ValueError(f"{name}: a secret reference is exactly `{{secretRef: NAME}}` with a stored "
                             "secret's name")
    return variables


def _well_formed_ref(value: dict[str, Any]) -> bool:
    name = value[SECRET_REF]
    return set(value) == {SECRET_REF} and isinstance(name, str) and re.match(SECRET_NAME_PATTERN, name) is not None


def _no_secret_refs(variables: dict[str, Any]) -> dict[str, Any]:
    for name, value in variables.items():
        if isinstance(value, dict) and SECRET_REF in value:
            raise ValueError(f"{name}: template variables cannot be stored secrets (they would be rendered "
                             "into manifests and diffs); put the value in a SOPS-encrypted Secret")
    return variables


SecretVariables = Annotated[dict[str, Any], AfterValidator(_secret_refs_allowed)]
"""Variables whose values may be `{secretRef: NAME}` (Terraform vars, Ansible extra vars)."""
PlainVariables = Annotated[dict[str, Any], AfterValidator(_no_secret_refs)]


class Backend(Model):
    """Where Terraform keeps state. S3 with a DynamoDB lock table (or S3 lock files), or local."""

    type: Literal["s3", "local"] = "s3"
    bucket: str | None = None
    region: str | None = None
    key: str | None = Field(default=None, description="State object key; default `<keyPrefix><env>/terraform.tfstate`.")
    key_prefix: str = "tidegate/"
    dynamodb_table: str | None = None
    use_lockfile: bool = False
    encrypt: bool = True
    lock_timeout: Duration = timedelta(minutes=5)

    @model_validator(mode="after")
    def _s3_needs_bucket(self) -> Backend:
        if self.type == "s3" and not self.bucket:
            raise ValueError("an s3 backend needs `bucket`")
        return self


class PluginMirror(Model):
    """Extra filesystem mirrors for Terraform providers, searched before the standard places."""

    paths: list[str] = Field(default_factory=list)
    offline: bool = Field(default=True, description="Never fall back to the registry.")


class TerraformDefaults(Model):
    backend: Backend | None = None
    plugin_mirror: PluginMirror = Field(default_factory=PluginMirror)


class InfrastructureSpec(Model):
    """Stage 1: a Terraform root module and the variables it gets."""

    path: RepoPath
    vars: SecretVariables = Field(default_factory=dict, description="Values may be `{secretRef: NAME}`: passed "
                                  "as environment variables (TF_VAR_*), never written to a file.")
    backend: Backend | None = Field(default=None, description="Overrides the repo default backend.")
    timeout: Duration = timedelta(minutes=30)


class HostOverride(Model):
    address: str | None = Field(default=None, description="Becomes ansible_host.")
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    user: str | None = None


class Connection(Model):
    """How Ansible reaches the nodes: SSH settings for sandboxes and bastions."""

    type: Literal["ssh", "local"] = "ssh"
    user: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    private_key_ref: SecretRef | None = None
    known_hosts_ref: SecretRef | None = Field(default=None, description="The nodes' host keys (known_hosts lines): "
                                              "host key checking is then strict against exactly these.")
    become: bool = False
    become_password_ref: SecretRef | None = Field(default=None, description="The sudo/become password "
                                                  "(ansible_become_password), handed over like a secret extra var.")
    host_overrides: dict[str, HostOverride] = Field(default_factory=dict)


class InventorySource(Model):
    """Where the configuration stage's nodes come from: an output of this environment's Terraform,
    a YAML file in the repo, or a stored secret — each a list of `{name, address, groups?, vars?}`."""

    terraform_output: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")] | None = None
    file: RepoPath | None = None
    secret: Annotated[str, Field(pattern=SECRET_NAME_PATTERN)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> InventorySource:
        if sum(value is not None for value in (self.terraform_output, self.file, self.secret)) != 1:
            raise ValueError("set exactly one of `terraformOutput`, `file` or `secret`")
        return self

    @property
    def describe(self) -> str:
        if self.terraform_output is not None:
            return f"Terraform output `{self.terraform_output}`"
        return f"inventory file {self.file}" if self.file is not None else f"stored secret {self.secret!r}"


class ConfigurationSpec(Model):
    """Stage 2: an Ansible playbook run against the nodes Terraform created (or a static list)."""

    playbook: RepoPath
    inventory_from: InventorySource
    extra_vars: SecretVariables = Field(default_factory=dict, description="Values may be `{secretRef: NAME}`.")
    connection: Connection | None = None
    timeout: Duration = timedelta(minutes=15)


class IgnoreRule(Model):
    """Fields the diff ignores for matching objects (Argo CD's ignoreDifferences)."""

    group: str = ""
    kind: str
    name: str | None = None
    namespace: str | None = None
    json_pointers: Annotated[list[JsonPointer], Field(min_length=1)]


class WorkloadSpec(Model):
    """Stage 3: one directory of manifests (plain YAML, Kustomize or Jinja2 templates)."""

    name: Name
    path: RepoPath
    namespace: Name | None = None
    variables: PlainVariables = Field(default_factory=dict, description="Template variables, over the environment's.")
    force_conflicts: bool = False
    prune: bool = True
    ignore_differences: list[IgnoreRule] = Field(default_factory=list)


class KubeconfigSource(Model):
    terraform_output: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")] | None = None
    secret: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> KubeconfigSource:
        if (self.terraform_output is None) == (self.secret is None):
            raise ValueError("set exactly one of `terraformOutput` or `secret`")
        return self


class ClusterSpec(Model):
    kubeconfig_from: KubeconfigSource


class SyncPolicy(Model):
    """When and how Tidegate syncs; Argo CD's automated/selfHeal/prune, Flux's intervals."""

    automated: bool = True
    self_heal: bool = False
    prune: bool = True
    interval: Duration = timedelta(minutes=2)
    drift_interval: Duration = timedelta(minutes=10)


class ApprovalPolicy(Model):
    required: bool = False
    min_approvals: Annotated[int, Field(ge=1, le=10)] = 1
    approvers: list[Approver] = Field(default_factory=list)

    @model_validator(mode="after")
    def _required_needs_approvers(self) -> ApprovalPolicy:
        if self.required and not self.approvers:
            raise ValueError("`approvers` must name at least one user or group when approval is required")
        return self


EnvVarName = Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")]


class PreviewInfrastructure(Model):
    env: dict[EnvVarName, EnvVarName] = Field(
        min_length=1, description="Variable Terraform sees -> variable of the worker's environment holding its value.")


class PreviewConfiguration(Model):
    private_key_ref: SecretRef


class PreviewWorkloads(Model):
    kubeconfig_ref: SecretRef


class PreviewSpec(Model):
    """Read-only credentials for pull request previews, per stage, used instead of the environment's
    own (a plan needs to read state and APIs, never to write them). Read from the environment as the
    tracked branch has it, never from the pull request's head: a PR cannot choose its own credentials."""

    infrastructure: PreviewInfrastructure | None = None
    configuration: PreviewConfiguration | None = None
    workloads: PreviewWorkloads | None = None


class Decryption(Model):
    """How SOPS-encrypted files in the repo are decrypted (Flux's `spec.decryption`): with the age
    identity held in the stored secret `secretRef` (`tidegate secret set NAME --from-file key.txt`)."""

    provider: Literal["sops"] = "sops"
    secret_ref: Annotated[str, Field(pattern=SECRET_NAME_PATTERN)]


class EnvironmentSpec(Model):
    depends_on: list[Name] = Field(default_factory=list)
    variables: PlainVariables = Field(default_factory=dict, description="Template variables for every workload.")
    infrastructure: InfrastructureSpec | None = None
    configuration: ConfigurationSpec | None = None
    workloads: list[WorkloadSpec] = Field(default_factory=list)
    cluster: ClusterSpec | None = None
    sync: SyncPolicy | None = Field(default=None, description="Unset fields come from tidegate.yaml, then defaults.")
    approval: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    preview: PreviewSpec | None = None
    decryption: Decryption | None = Field(default=None, description="Overrides tidegate.yaml's.")


class Environment(Model):
    """One environment: everything Tidegate needs to make it real."""

    api_version: Literal["tidegate.dev/v1alpha1"]
    kind: Literal["Environment"]
    metadata: Metadata
    spec: EnvironmentSpec


class RepositoryDefaults(Model):
    terraform: TerraformDefaults = Field(default_factory=TerraformDefaults)
    connection: Connection | None = None
    sync: SyncPolicy | None = None
    variables: PlainVariables = Field(default_factory=dict)
    decryption: Decryption | None = None


class RepositoryConfig(Model):
    """`tidegate.yaml` at the repo root: defaults shared by every environment. Optional."""

    api_version: Literal["tidegate.dev/v1alpha1"]
    kind: Literal["RepositoryConfig"]
    spec: RepositoryDefaults = Field(default_factory=RepositoryDefaults)
