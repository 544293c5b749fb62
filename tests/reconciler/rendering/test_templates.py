"""Jinja2 templates: rendered in a sandbox with the environment's variables, errors at their line."""

from __future__ import annotations

import resource

import pytest

from reconciler.rendering.limits import RenderLimits
from tests.reconciler.rendering.conftest import Repo

SETTINGS = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: environment-settings
data:
  environment: "{{ environment }}"
  {% if feature_flags.dark_mode == "true" %}
  dark_mode: "on"
  {% endif %}
  replicas: "{{ replicas * 2 }}"
"""


def test_a_template_renders_with_the_environment_variables(repo: Repo) -> None:
    repo.write("apps/settings/settings.yaml.j2", SETTINGS)

    workload = repo.render("apps/settings", {"environment": "staging", "replicas": 2,
                                             "feature_flags": {"dark_mode": "true"}})

    assert workload.issues == ()
    [manifest] = workload.manifests
    assert manifest.body["data"] == {"environment": "staging", "dark_mode": "on", "replicas": "4"}
    # lines did not shift, so fields map to the template's own lines
    assert str(manifest.locate(("data", "replicas"))) == "apps/settings/settings.yaml.j2:10:13"


def test_a_directory_may_mix_plain_yaml_and_templates(repo: Repo) -> None:
    repo.write("apps/mixed/a.yaml", repo.service("a"))
    repo.write("apps/mixed/b.yml.j2", repo.service("{{ name }}"))
    repo.write("apps/mixed/c.yaml", repo.service("c"))

    workload = repo.render("apps/mixed", {"name": "b"})

    assert [m.identity.name for m in workload.manifests] == ["a", "b", "c"]


def test_an_undefined_variable_is_an_error_at_its_template_line(repo: Repo) -> None:
    repo.write("apps/settings/settings.yaml.j2", SETTINGS)

    assert repo.issues("apps/settings", {"environment": "staging", "feature_flags": {}}) == [
        "apps/settings/settings.yaml.j2:7:1: <template>: template error: 'dict object' has no attribute "
        "'dark_mode'"
    ]


def test_a_missing_top_level_variable_names_itself(repo: Repo) -> None:
    repo.write("apps/s/cm.yaml.j2", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ nmae }}\n")

    assert repo.issues("apps/s", {"name": "x"}) == [
        "apps/s/cm.yaml.j2:4:1: <template>: template error: 'nmae' is undefined"
    ]


def test_a_syntax_error_is_reported_at_its_line(repo: Repo) -> None:
    repo.write("apps/s/cm.yaml.j2", "apiVersion: v1\nkind: ConfigMap\n{% if x %}\nmetadata: {name: x}\n")

    [issue] = repo.issues("apps/s", {"x": 1})

    assert issue.startswith("apps/s/cm.yaml.j2:3:1: <template>: template syntax error: Unexpected end of "
                            "template.")


@pytest.mark.parametrize(
    "expression",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.environ }}",
        "{{ lipsum.__globals__['os'].popen('id').read() }}",
        "{{ self._TemplateReference__context }}",
        "{{ range.__self__ }}",
    ],
    ids=["mro", "globals", "lipsum-os", "context", "builtins"],
)
def test_sandbox_escape_attempts_fail_with_an_issue(repo: Repo, expression: str) -> None:
    repo.write("apps/evil/cm.yaml.j2", f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\ndata:\n"
                                       f"  leak: \"{expression}\"\n")

    workload = repo.render("apps/evil")

    assert workload.manifests == ()
    [issue] = workload.issues
    assert str(issue.location) == "apps/evil/cm.yaml.j2:5:1"
    assert issue.field == "<template>"
    assert "sandbox" in issue.message or "undefined" in issue.message or "has no attribute" in issue.message


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
         "refused by the template sandbox: range() would exceed the template loop budget of 100000 iterations"),
        ("{{ 'x' * 100000000 }}", "refused by the template sandbox: a template value would exceed 1000000 items"),
        ("{{ 9 ** 999999 }}", "refused by the template sandbox: exponent too large in a template"),
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "template recursion too deep"),
        ("{{ 1 / 0 }}", "template error (ZeroDivisionError): division by zero"),
    ],
    ids=["nested-loops", "huge-string", "huge-power", "recursion", "division"],
)
def test_templates_cannot_exhaust_a_worker(repo: Repo, template: str, expected: str) -> None:
    repo.write("apps/evil/cm.yaml.j2", template)

    [issue] = repo.render("apps/evil").issues

    assert issue.message == expected
    assert issue.location.file == "apps/evil/cm.yaml.j2"


def test_output_larger_than_the_file_cap_is_refused(repo: Repo) -> None:
    repo.write("apps/big/cm.yaml.j2", "{% for i in range(100000) %}{{ 'x' * 20 }}{% endfor %}")

    [issue] = repo.render("apps/big").issues

    assert issue.message == "rendered output exceeds 1048576 characters"
    assert str(issue.location) == "apps/big/cm.yaml.j2:1:1"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("apiVersion: v1\n{{ 'a'.ljust(10**9) }}\n",
         "refused by the template sandbox: a padding width above 1048576 characters"),
        ("apiVersion: v1\n{% set width = 10000000000 %}{{ '%*s' % (width, 'a') }}\n",
         "template rendering exceeded its memory limit"),
        ("apiVersion: v1\n{% set l = [0] * 1000 %}\n{% for a in l %}{% for b in l %}{% for c in l %}"
         "{% endfor %}{% endfor %}{% endfor %}\n", "template rendering did not finish within 1 s"),
    ],
    ids=["padding-bomb", "format-bomb-hits-the-memory-limit", "slow-loops-hit-the-time-limit"],
)
def test_a_template_bomb_fails_at_its_line_in_the_sealed_child_not_in_the_worker(
        repo: Repo, template: str, expected: str) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    repo.write("apps/bomb/cm.yaml.j2", template)

    [issue] = repo.render("apps/bomb", limits=RenderLimits(template_seconds=1)).issues

    assert issue.message == expected
    assert issue.location.file == "apps/bomb/cm.yaml.j2" and issue.location.line in (2, 3)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 100, "the template ran in this process"


def test_includes_work_inside_the_workload_directory(repo: Repo) -> None:
    repo.write("apps/web/labels.j2", "labels: {app: {{ name }}}")
    repo.write("apps/web/cm.yaml.j2", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
                                      "  name: x\n  {% include 'labels.j2' %}\n")

    [manifest] = repo.render("apps/web", {"name": "web"}).manifests

    assert manifest.body["metadata"]["labels"] == {"app": "web"}


@pytest.mark.parametrize(
    ("target", "reason"),
    [("../../outside.j2", "must be a relative path inside the workload directory"),
     ("/etc/passwd", "must be a relative path inside the workload directory"),
     (".secret.j2", "must be a relative path inside the workload directory"),
     ("escape.j2", "is or goes through a symlink that resolves outside the repository")],
    ids=["dotdot", "absolute", "hidden", "symlink"],
)
def test_includes_cannot_leave_the_workload_directory(repo: Repo, target: str, reason: str) -> None:
    repo.write("apps/outside.j2", "stolen: true")
    repo.write("apps/web/.secret.j2", "stolen: true")
    repo.link("apps/web/escape.j2", repo.outside / "secret.yaml")
    repo.write("apps/web/cm.yaml.j2", f"apiVersion: v1\nkind: ConfigMap\n{{% include '{target}' %}}\n")

    issues = repo.render("apps/web").issues
    [issue] = [issue for issue in issues if issue.location.file == "apps/web/cm.yaml.j2"]

    assert str(issue.location) == "apps/web/cm.yaml.j2:3:1"
    assert reason in issue.message


def test_loops_and_stripped_comments_still_map_fields_to_their_template_lines(repo: Repo) -> None:
    repo.write("apps/loop/cms.yaml.j2", """\
        {#-
          A header comment that, with its whitespace control, removes these lines from the output.
        -#}
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: flags
        data:
          environment: {{ environment | tojson }}
        {%- for name, value in flags | dictsort %}
          {{ name | tojson }}: {{ value }}
        {%- endfor %}
          owner: platform
        """)

    [manifest] = repo.render("apps/loop", {"environment": "staging", "flags": {"a": '"on"', "b": 3}}).manifests

    assert manifest.body["data"] == {"environment": "staging", "a": "on", "b": 3, "owner": "platform"}
    where = {key: str(manifest.locate(("data", key))) for key in manifest.body["data"]}
    assert where == {
        "environment": "apps/loop/cms.yaml.j2:9:16",
        "a": "apps/loop/cms.yaml.j2:11:8",
        "b": "apps/loop/cms.yaml.j2:11:8",
        "owner": "apps/loop/cms.yaml.j2:13:10",
    }
    assert str(manifest.location) == "apps/loop/cms.yaml.j2:4:1"


def test_yaml_errors_in_the_output_are_reported_at_the_template_line(repo: Repo) -> None:
    repo.write("apps/s/cm.yaml.j2", "{# header #}\n{% for i in range(3) %}\nk{{ i }}: v\n{% endfor %}\nbad: [\n")

    [issue] = repo.render("apps/s").issues

    assert issue.location.line == 5 and issue.field == "<yaml>"


def test_output_too_large_to_align_is_placed_at_line_one_with_the_output_line(repo: Repo) -> None:
    repo.write("apps/big/cms.yaml.j2",
               "{% for i in range(6000) %}# line {{ i }}\n{% endfor %}apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n")

    assert repo.issues("apps/big") == [
        'apps/big/cms.yaml.j2:1:1: metadata.name: missing required field "name" (line 6003 of the rendered '
        "output)"
    ]
