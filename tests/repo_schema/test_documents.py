"""The YAML reader: locations, duplicate keys, alias bombs, ambiguous booleans, limits."""

from __future__ import annotations

import pytest

from repo_schema.documents import Limits, read_documents


def test_every_value_and_key_keeps_its_line_and_column() -> None:
    documents, issues = read_documents("a: 1\nb:\n  c: [x, z]\n", "f.yaml")
    assert issues == []
    document = documents[0]
    assert document.data == {"a": 1, "b": {"c": ["x", "z"]}}
    assert str(document.locate(("b", "c", 1))) == "f.yaml:3:10"
    assert str(document.locate(("b", "c"), key=True)) == "f.yaml:3:3"
    assert str(document.locate(("b", "missing"))) == "f.yaml:3:3"


def test_a_duplicate_key_is_reported_where_it_is_repeated() -> None:
    _, issues = read_documents("name: a\nspec: {}\nname: b\n", "env.yaml")
    assert [str(issue) for issue in issues] == [
        "env.yaml:3:1: name: duplicate key 'name' (first defined at line 1)"
    ]


def billion_laughs(levels: int = 9) -> str:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    previous = "a"
    for name in "bcdefghij"[:levels - 1]:
        text += f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]\n"
        previous = name
    return text


def test_an_alias_bomb_is_refused_before_it_is_expanded() -> None:
    documents, issues = read_documents(billion_laughs(), "bomb.yaml")
    assert documents == []
    assert len(issues) == 1 and "alias expansion" in issues[0].message
    assert str(issues[0].location) == "bomb.yaml:1:1"


def test_a_recursive_alias_is_refused() -> None:
    _, issues = read_documents("a: &a [*a]\n", "loop.yaml")
    assert "refers to itself" in issues[0].message


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("name: on\n", "name"),
        ("name: yes\n", "name"),
        ("name: Y\n", "name"),
        ("flags: [no]\n", "flags[0]"),
        ("off: 1\n", "off"),
    ],
    ids=["on", "yes", "Y", "in-a-list", "as-a-key"],
)
def test_unquoted_yaml11_booleans_are_reported_with_their_field(text: str, field: str) -> None:
    documents, issues = read_documents(text, "f.yaml")
    assert [issue.field for issue in issues] == [field]
    assert "YAML 1.1" in issues[0].message
    assert documents[0].data  # still readable, as the string the author probably meant


@pytest.mark.parametrize(
    ("text", "value"),
    [('name: "on"\n', "on"), ("enabled: true\n", True), ("when: 2024-01-01\n", "2024-01-01"),
     ("num: 0x10\n", 16), ("x: ~\n", None), ("f: 1.5\n", 1.5)],
    ids=["quoted-on", "true", "date-stays-a-string", "hex", "null", "float"],
)
def test_scalars_resolve_as_kubernetes_and_json_schema_expect(text: str, value: object) -> None:
    documents, issues = read_documents(text, "f.yaml")
    assert issues == []
    assert next(iter(documents[0].data.values())) == value


def test_size_and_document_count_are_capped() -> None:
    limits = Limits(max_bytes=100, max_documents=2)
    _, big = read_documents("a: " + "x" * 200, "big.yaml", limits=limits)
    assert "limit is 100" in big[0].message
    _, many = read_documents("a: 1\n---\nb: 2\n---\nc: 3\n", "many.yaml", limits=limits)
    assert "more than 2" in many[0].message


def test_broken_yaml_points_at_the_problem() -> None:
    _, issues = read_documents("a: [1,\nb: {\n", "bad.yaml")
    assert issues[0].location.file == "bad.yaml" and issues[0].location.line >= 2
    assert issues[0].message.startswith("invalid YAML")


@pytest.mark.parametrize(
    ("text", "line"),
    [("a: 1\nb: [oops\n", 2), ("a: 1\nb: {x: 1\n\n", 2), ("a: 1\nb: c: d\n", 2)],
    ids=["unclosed-sequence-at-eof", "unclosed-mapping-at-eof", "mapping-value-mid-file"],
)
def test_broken_yaml_names_the_line_the_author_must_fix(text: str, line: int) -> None:
    _, issues = read_documents(text.encode(), "env.yaml")
    assert (issues[0].location.file, issues[0].location.line) == ("env.yaml", line), issues[0]


def test_empty_documents_are_skipped_like_kubectl_does() -> None:
    documents, issues = read_documents("---\n---\nkind: A\n---\n", "m.yaml")
    assert issues == [] and [d.data for d in documents] == [{"kind": "A"}]
    assert documents[0].start.line == 3


@pytest.mark.parametrize("depth", [101, 50_000], ids=["just-too-deep", "segfault-deep"])
def test_deep_nesting_is_refused_before_anything_recursive_runs(depth: int) -> None:
    documents, issues = read_documents("a: " + "[" * depth + "]" * depth + "\n", "deep.yaml")
    assert documents == []
    assert [issue.message for issue in issues] == ["YAML nested deeper than 100 levels"]
    assert issues[0].location.line == 1
