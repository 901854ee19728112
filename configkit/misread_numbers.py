"""Plain YAML scalars that YAML 1.1 reads as numbers nobody meant: `0101`, `0010`, `1:30`.

PyYAML follows YAML 1.1, where a leading 0 makes an integer octal and colons make it base 60:
`start: 0010` (a vendor's register sheet) is register 8, `point: 0101` (a numeric point code)
is the code '65', `poll: 1:30` is 90 s, a collector's `batch_max: 0200` is 128. None of these
is an error to YAML, so each becomes a problem here, at its file, line and key, before the
model is checked. A number written with `0x`, `0o` or `0b` says what it is and passes, as does
any quoted text. Both programs' configs are read through `parse_yaml_as_written`; each names
which of its keys hold codes (text, though digits).

Pure: YAML text in, issues out. It reads the parser's events (no document is built), keeping
the key path of each scalar.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import yaml

from configkit.issues import ConfigIssue, KeyPath, format_path
from configkit.yamllines import ParsedYaml, parse_yaml

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["misread_numbers", "parse_yaml_as_written"]

_LEADING_ZERO = re.compile(r"[-+]?0[0-7_]+")  # YAML 1.1 octal: 0 then octal digits
_BASE_60 = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(slots=True)
class _Node:
    """An open mapping or sequence: where it is, and where its next child goes."""

    path: KeyPath
    mapping: bool
    index: int = 0
    key: str | int | None = field(default=None)  # a mapping's pending key; None: a key is next


def no_codes(path: KeyPath) -> bool:  # noqa: ARG001 - the `is_code` of a document without codes
    """No key of the document holds a code."""
    return False


def parse_yaml_as_written(
    text: str, file: str, *, is_code: Callable[[KeyPath], bool] = no_codes
) -> ParsedYaml:
    """`parse_yaml`, with a problem for each number YAML reads other than as written.

    `is_code`: whether the value at a key path is a code (text, though it may be all digits).
    """
    parsed = parse_yaml(text, file)
    misread = misread_numbers(text, file, is_code=is_code)
    if not misread:
        return parsed
    return dataclasses.replace(parsed, issues=(*parsed.issues, *misread))


def misread_numbers(
    text: str, file: str, *, is_code: Callable[[KeyPath], bool] = no_codes
) -> list[ConfigIssue]:
    """The plain scalars of `text` that YAML 1.1 reads as octal or base-60 numbers.

    And those at a path `is_code` names that YAML reads as a number other than their digits.
    `text` must already have parsed (`configkit.yamllines.parse_yaml`): a YAML error stops
    the walk without an issue of its own.
    """
    issues = []
    for path, event in _scalars(text):
        problem = _misread(event.value) or (_code_misread(event.value) if is_code(path) else None)
        if problem is not None:
            mark = event.start_mark
            line = None if mark is None else mark.line + 1
            issues.append(ConfigIssue(file, line, format_path(path), problem))
    return issues


def _misread(value: str) -> str | None:
    """Why YAML's reading of the plain scalar `value` is not what it says, or None."""
    octal, base_60 = _LEADING_ZERO.fullmatch(value), _BASE_60.fullmatch(value)
    if not (octal or base_60):
        return None
    number = yaml.load(value, Loader=_Loader)  # noqa: S506 - the safe loader
    if not isinstance(number, int | float) or isinstance(number, bool):
        return None  # text to YAML too (0:30 is no base-60 number): the model judges it
    if octal:
        return (
            f"YAML reads {value} as the octal number {number} (a leading 0): write the number "
            f"without the 0, or '{value}' in quotes for a code"
        )
    return (
        f"YAML reads {value} as the base-60 number {number}: write the number meant, "
        f"or '{value}' in quotes for text"
    )


def _code_misread(value: str) -> str | None:
    """Why a code written `value` is not the text YAML makes of it (0x1F is 31), or None."""
    number = yaml.load(value, Loader=_Loader)  # noqa: S506 - the safe loader
    if not isinstance(number, int) or isinstance(number, bool) or str(number) == value:
        return None
    return (
        f"YAML reads {value} as the number {number}, but a code is text: write '{value}' in quotes"
    )


def _scalars(text: str) -> Iterator[tuple[KeyPath, yaml.ScalarEvent]]:
    """Each plain value scalar of the document with its key path (keys are not values)."""
    stack: list[_Node] = []
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                stack.pop()
                _advance(stack)
            elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                parent = stack[-1] if stack else None
                path = _child_path(parent)
                stack.append(_Node(path, isinstance(event, yaml.MappingStartEvent)))
            elif isinstance(event, yaml.ScalarEvent | yaml.AliasEvent):
                parent = stack[-1] if stack else None
                if parent is not None and parent.mapping and parent.key is None:
                    parent.key = event.value if isinstance(event, yaml.ScalarEvent) else "*"
                    continue
                if isinstance(event, yaml.ScalarEvent) and event.implicit[0]:
                    yield _child_path(parent), event
                _advance(stack)
    except yaml.YAMLError:
        return


def _child_path(parent: _Node | None) -> KeyPath:
    """The path of the node that comes next in `parent`."""
    if parent is None:
        return ()
    part = parent.key if parent.mapping else parent.index
    return (*parent.path, "?" if part is None else part)


def _advance(stack: list[_Node]) -> None:
    """A child of the innermost open node is complete: move on to the next one."""
    if not stack:
        return
    node = stack[-1]
    if node.mapping:
        if node.key is None:  # a complex key (a mapping or sequence) ended: its value is next
            node.key = "?"
        else:
            node.key = None
    else:
        node.index += 1
