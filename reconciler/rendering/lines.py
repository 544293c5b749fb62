"""Mapping lines of a template's output back to the template lines that produced them.

YAML errors and schema errors are found in the rendered text, but users edit the template.
Jinja keeps no output-to-source map, so the two texts are aligned like a diff: lines without
markup are identical in both and anchor the alignment; between anchors, each output line maps to
the template line whose literal text it matches once every `{{ … }}`/`{% … %}` is read as a
wildcard (`  {{ name }}: {{ value }}` matches `  "a": "on"`), preferring the most specific line and
then the nearest. Exact for substitutions and conditionals; the loop body's line for loop output;
the expression's line for a multi-line value.

Matching is a linear glob match over literal segments, never a regular expression built from the
template: a hostile template must not be able to make alignment backtrack for hours.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher
from typing import TypeVar

from repo_schema.documents import SourceDocument
from repo_schema.issues import Issue, Location

MAX_ALIGNED_LINES = 5000  # difflib is quadratic at worst; larger outputs are placed at line 1
_WINDOW = 40  # template lines searched around an insertion (a loop's repeated output)
_MARKUP = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}")

K = TypeVar("K")


def align_lines(template: str, rendered: str) -> list[int] | None:
    """Template line (1-based) of each rendered line, or None when the texts are too large."""
    source, output = template.splitlines(), rendered.splitlines()
    if len(source) > MAX_ALIGNED_LINES or len(output) > MAX_ALIGNED_LINES:
        return None
    skeletons = [_skeleton(line) for line in source]
    mapping = [1] * len(output)
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, source, output, autojunk=False).get_opcodes():
        for j in range(j1, j2):
            if tag == "equal":
                mapping[j] = i1 + (j - j1) + 1
            elif tag in ("replace", "insert"):
                # search near the proportional position, so a huge block stays linear
                near = i1 + (j - j1) * (i2 - i1) // (j2 - j1)
                mapping[j] = _best_line(skeletons, output[j], near, i1, i2) + 1
    return mapping


def _skeleton(line: str) -> list[str]:
    """Literal segments of a template line; markup becomes the gaps between them."""
    if not _MARKUP.search(line):
        return [line.strip()]
    return [segment.strip() for segment in _MARKUP.split(line)]


def _best_line(skeletons: list[list[str]], line: str, near: int, i1: int, i2: int) -> int:
    """The template line near `near` (inside the changed block [i1, i2) when it has lines; around
    an insertion otherwise) that best explains `line`."""
    block_low, block_high = (i1, i2) if i2 > i1 else (0, len(skeletons))
    low, high = max(block_low, near - _WINDOW), min(block_high, near + _WINDOW + 1)
    if low >= high:
        return max(0, min(near, len(skeletons) - 1))
    text = line.strip()

    def score(index: int) -> tuple[bool, int, int]:
        skeleton = skeletons[index]
        return _glob_match(skeleton, text), sum(map(len, skeleton)), -abs(index - near)

    return max(range(low, high), key=score)


def _glob_match(segments: list[str], text: str) -> bool:
    """Whether `text` is the segments in order with anything between them (no backtracking)."""
    if len(segments) == 1:
        return segments[0] == text
    first, *middle, last = segments
    if not text.startswith(first) or not text.endswith(last) or len(first) + len(last) > len(text):
        return False
    position, end = len(first), len(text) - len(last)
    for segment in middle:
        found = text.find(segment, position, end)
        if found < 0:
            return False
        position = found + len(segment)
    return True


def relocate_document(document: SourceDocument, lines: list[int]) -> SourceDocument:
    """The same document with every location moved from output lines to template lines."""
    return SourceDocument(
        file=document.file, index=document.index, data=document.data,
        start=relocate(document.start, lines),
        values=_relocate_table(document.values, lines), keys=_relocate_table(document.keys, lines),
    )


def relocate_issue(issue: Issue, lines: list[int]) -> Issue:
    return Issue(relocate(issue.location, lines), issue.field, issue.message)


def relocate(location: Location, lines: list[int]) -> Location:
    if not lines:
        return Location(location.file, 1, location.column)
    index = min(max(location.line, 1), len(lines)) - 1
    return Location(location.file, lines[index], location.column)


def _relocate_table(table: dict[K, Location], lines: list[int]) -> dict[K, Location]:
    return {key: relocate(where, lines) for key, where in table.items()}
