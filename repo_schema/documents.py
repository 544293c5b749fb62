"""A hostile-input YAML reader that remembers where every value came from.

Config repos and rendered manifests are read with this module only. It differs from
`yaml.safe_load` where that matters for a reconciler:

* every value and key keeps its file:line:col, so errors name the exact place;
* duplicate keys are errors (PyYAML silently keeps the last one);
* alias expansion is measured before anything is built, so a "billion laughs" file fails at once;
* file size and document count are capped;
* unquoted YAML 1.1 booleans (`on`, `yes`, `Y` …) are reported: Kubernetes reads `on` as true,
  YAML 1.2 tools as the string "on", and a name silently becoming `true` is a classic outage;
* dates stay strings, as Kubernetes and JSON Schema expect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from repo_schema.issues import FieldPath, Issue, Location, format_field

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

AMBIGUOUS_BOOLEANS = re.compile(r"^(y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)$")
_TAG = "tag:yaml.org,2002:"
_OPEN = (yaml.BlockSequenceStartToken, yaml.BlockMappingStartToken, yaml.FlowSequenceStartToken,
         yaml.FlowMappingStartToken)
_CLOSE = (yaml.BlockEndToken, yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken)


@dataclass(frozen=True)
class Limits:
    """Caps that keep one hostile file from exhausting a worker."""

    max_bytes: int = 1024 * 1024
    max_documents: int = 1000
    max_nodes: int = 250_000
    max_depth: int = 100


DEFAULT_LIMITS = Limits()


@dataclass
class SourceDocument:
    """One YAML document: its data and where each field of it was written."""

    file: str
    index: int
    data: Any
    start: Location
    values: dict[FieldPath, Location] = field(default_factory=dict)
    keys: dict[FieldPath, Location] = field(default_factory=dict)

    def locate(self, path: FieldPath, *, key: bool = False) -> Location:
        """The closest known location of `path`: the field itself, else its nearest parent."""
        table = self.keys if key else self.values
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            found = table.get(prefix) or self.values.get(prefix)
            if found is not None:
                return found
        return self.start

    def issue(self, path: FieldPath, message: str, *, key: bool = False) -> Issue:
        return Issue(self.locate(path, key=key), format_field(path), message)


class _DocumentTooLarge(Exception):
    pass


def _mark(file: str, node: yaml.Node) -> Location:
    return Location(file, node.start_mark.line + 1, node.start_mark.column + 1)


def _expanded_size(node: yaml.Node, memo: dict[int, int], active: set[int], limit: int) -> int:
    """Count the nodes an alias-expanding load would build, without building them."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        raise _DocumentTooLarge("an alias refers to itself (recursive structure)")
    active.add(key)
    size = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            size += _expanded_size(child, memo, active, limit)
            if size > limit:
                break
    elif isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            size += _expanded_size(key_node, memo, active, limit)
            size += _expanded_size(value_node, memo, active, limit)
            if size > limit:
                break
    active.discard(key)
    memo[key] = size
    return size


class _Builder:
    """Turns a composed node tree into plain Python values, recording locations and problems."""

    def __init__(self, document: SourceDocument, *, report_ambiguous: bool) -> None:
        self.document = document
        self.report_ambiguous = report_ambiguous
        self.issues: list[Issue] = []
        self._scalars = SafeConstructor()

    def build(self, node: yaml.Node, path: FieldPath) -> Any:
        self.document.values.setdefault(path, _mark(self.document.file, node))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, (*path, i)) for i, child in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        return self._scalar(node, path)

    def _mapping(self, node: yaml.MappingNode, path: FieldPath) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _TAG + "merge":
                self._merge(result, value_node, path)
                continue
            key = self._key(key_node, path)
            if key is None:
                continue
            child = (*path, key)
            if key in result:
                self.issues.append(
                    Issue(_mark(self.document.file, key_node), format_field(child),
                          f"duplicate key {key!r} (first defined at line "
                          f"{self.document.keys[child].line})")
                )
                continue
            self.document.keys[child] = _mark(self.document.file, key_node)
            result[key] = self.build(value_node, child)
        return result

    def _merge(self, result: dict[Any, Any], value_node: yaml.Node, path: FieldPath) -> None:
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for source in sources:
            merged = self.build(source, path)
            if not isinstance(merged, dict):
                self.issues.append(self.document.issue(path, "a merge key (<<) needs a mapping"))
                continue
            for key, value in merged.items():
                result.setdefault(key, value)

    def _key(self, node: yaml.Node, path: FieldPath) -> str | int | None:
        if not isinstance(node, yaml.ScalarNode):
            self.issues.append(
                Issue(_mark(self.document.file, node), format_field(path), "mapping keys must be scalars")
            )
            return None
        value = self._scalar(node, (*path, str(node.value)))
        if isinstance(value, bool) or value is None or isinstance(value, float):
            return str(node.value)
        return value if isinstance(value, (str, int)) else str(value)

    def _scalar(self, node: yaml.ScalarNode, path: FieldPath) -> Any:
        text = node.value
        plain = not node.style  # the C parser says "" for plain, the Python one None
        if plain and AMBIGUOUS_BOOLEANS.match(text):
            if self.report_ambiguous:
                self.issues.append(
                    Issue(_mark(self.document.file, node), format_field(path),
                          f"unquoted {text!r} is a boolean in YAML 1.1 (Kubernetes) but a string in "
                          f"YAML 1.2; write \"{text}\" for the string or true/false for a boolean")
                )
            return text
        tag = node.tag.removeprefix(_TAG)
        if tag in ("null", "bool", "int", "float"):
            return self._scalars.construct_object(node)
        return str(text)


def read_documents(
    text: str | bytes,
    file: str,
    *,
    limits: Limits = DEFAULT_LIMITS,
    report_ambiguous: bool = True,
) -> tuple[list[SourceDocument], list[Issue]]:
    """Parse every document of one file; return the documents that could be read and all issues.

    Empty documents (a lone `---`) are skipped, as kubectl does.
    """
    size = len(text.encode() if isinstance(text, str) else text)
    if size > limits.max_bytes:
        return [], [Issue(Location(file), "<file>", f"file is {size} bytes; the limit is {limits.max_bytes}")]
    deepest = _too_deep(text, file, limits.max_depth)
    if deepest is not None:
        return [], [Issue(deepest, "<yaml>", f"YAML nested deeper than {limits.max_depth} levels")]
    documents: list[SourceDocument] = []
    issues: list[Issue] = []
    try:
        for index, node in enumerate(yaml.compose_all(text, Loader=_Loader)):
            if index >= limits.max_documents:
                issues.append(Issue(Location(file), "<file>",
                                    f"more than {limits.max_documents} YAML documents in one file"))
                break
            if node is None or (node.tag == _TAG + "null" and node.value in ("", "~", "null")):
                continue
            document = _build_document(node, file, index, limits, report_ambiguous, issues)
            if document is not None:
                documents.append(document)
    except yaml.MarkedYAMLError as error:
        issues.append(_yaml_issue(error, text, file))
    except yaml.YAMLError as error:
        issues.append(Issue(Location(file), "<yaml>", f"invalid YAML: {error}"))
    except RecursionError:  # aliases can nest deeper than the text does
        issues.append(Issue(Location(file), "<yaml>", "YAML (with its aliases expanded) nested too deeply"))
    return documents, issues


def _yaml_issue(error: yaml.MarkedYAMLError, text: str | bytes, file: str) -> Issue:
    """Point at the problem, unless the parser only noticed it at the end of the file: an unclosed
    `[` or `{` is reported at EOF, and the line that opened it is the one the author must fix."""
    mark = error.problem_mark or error.context_mark
    decoded = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    rest = decoded[mark.index:] if mark is not None else "x"
    if error.context_mark is not None and not rest.strip():
        mark = error.context_mark
    where = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file)
    problem = " ".join(part for part in (error.context, error.problem) if part)
    return Issue(where, "<yaml>", f"invalid YAML: {problem or error}")


def _too_deep(text: str | bytes, file: str, max_depth: int) -> Location | None:
    """Where nesting first exceeds `max_depth`, or None.

    The composer and the builder recurse (libyaml's in C: a 1 MB `[[[[…` file segfaults the
    worker at some tens of thousands of levels), but the scanner is iterative, so depth is measured
    from the token stream before anything recursive runs. Syntax errors are left to the parser.
    """
    depth = 0
    try:
        for token in yaml.scan(text, Loader=_Loader):
            if isinstance(token, _OPEN):
                depth += 1
                if depth > max_depth:
                    mark = token.start_mark
                    return Location(file, mark.line + 1, mark.column + 1)
            elif isinstance(token, _CLOSE):
                depth -= 1
    except yaml.MarkedYAMLError as error:
        # PyYAML >= 6.0.4 caps flow nesting in its scanner, which looks ahead and so raises before
        # yielding the bracket that crossed our (lower) limit: find that one in the text before its cap.
        mark = error.problem_mark
        if mark is None or "nesting depth" not in (error.problem or ""):
            return None
        decoded = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        if 0 < mark.index < len(decoded) and max_depth < 1000:
            return _too_deep(decoded[:mark.index], file, max_depth) or Location(file, mark.line + 1, mark.column + 1)
        return Location(file, mark.line + 1, mark.column + 1)
    except yaml.YAMLError:
        return None
    return None


def _build_document(
    node: yaml.Node, file: str, index: int, limits: Limits, report_ambiguous: bool, issues: list[Issue]
) -> SourceDocument | None:
    start = _mark(file, node)
    try:
        size = _expanded_size(node, {}, set(), limits.max_nodes)
    except _DocumentTooLarge as error:
        issues.append(Issue(start, "<document>", str(error)))
        return None
    if size > limits.max_nodes:
        issues.append(Issue(start, "<document>",
                            f"alias expansion would build more than {limits.max_nodes} nodes; "
                            "refusing (a 'billion laughs' document?)"))
        return None
    document = SourceDocument(file=file, index=index, data=None, start=start)
    builder = _Builder(document, report_ambiguous=report_ambiguous)
    document.data = builder.build(node, ())
    issues.extend(builder.issues)
    return document
