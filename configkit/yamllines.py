"""YAML with line numbers: every key path's line recorded, duplicate keys refused.

Pure: text and a file name in, `ParsedYaml` or `ConfigError` out; reading the file is the
caller's job. `parse_yaml` loads with `StrictLoader`: duplicate keys are errors (PyYAML keeps
the last one silently) and the 1-based line of every key path is recorded, so validation can
place each problem (`configkit.validation`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import yaml

from configkit.issues import ConfigError, ConfigIssue, KeyPath, format_path, show_value

# Aliases let one node stand for many; a small file must not expand into gigabytes of data.
_MAX_EXPANDED_NODES = 1_000_000
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
# What a double-quoted YAML text can hold ("\0", "\uD800") and no program can use: a NUL
# (PostgreSQL's text, file names, host names and the collector's check of a signed meta all
# refuse it) and a lone UTF-16 surrogate (no character: it cannot even be written as UTF-8,
# and pydantic's messages about such a text failed with UnicodeEncodeError at no line).
_UNUSABLE = re.compile("[\x00\ud800-\udfff]")
_ANY_CONFIG = "no text in a config file may hold one"


def text_problem(text: str) -> str | None:
    """Why a config text can hold no value a program may use, or None when it can."""
    found = _UNUSABLE.search(text)
    if found is None:
        return None
    if found[0] == "\x00":
        return f"holds a NUL character (U+0000); {_ANY_CONFIG}"
    code = f"U+{ord(found[0]):04X}"
    return f"holds {code}, a lone surrogate: no character, and not UTF-8 text; {_ANY_CONFIG}"


@dataclass(frozen=True, slots=True)
class ParsedYaml:
    """A loaded YAML document: its data, the line of every key path and the issues found."""

    file: str
    data: object
    lines: Mapping[KeyPath, int]
    issues: tuple[ConfigIssue, ...] = ()

    def line_of(self, path: Sequence[str | int]) -> int:
        """Return the line of `path`, or of its nearest ancestor that has one."""
        key = tuple(path)
        while key and key not in self.lines:
            key = key[:-1]
        return self.lines.get(key, 1)


if TYPE_CHECKING:
    _LoaderBase = yaml.SafeLoader
else:
    _LoaderBase = object


class _StrictLoading(_LoaderBase):
    """Duplicate keys refused and the line of every key path recorded, on either parser."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.lines: dict[KeyPath, int] = {}
        self.duplicates: list[tuple[KeyPath, int, int]] = []  # path, line, line of the first
        self.bad_text: list[tuple[KeyPath, int, str]] = []  # path, line, `text_problem`
        self._expanded: dict[int, int] = {}

    def get_single_node(self) -> yaml.Node | None:
        """Compose the document, then index its lines and find duplicate keys."""
        node = super().get_single_node()
        if node is not None:
            self.lines[()] = node.start_mark.line + 1
            self._index(node, (), set())
        return node

    def get_single_data(self) -> Any:  # noqa: ANN401 - YAML gives whatever the text says
        """Load the document; used by `yaml.load(text, Loader=StrictLoader)`."""
        node = self.get_single_node()
        if self.duplicates:
            path, line, first = self.duplicates[0]
            raise yaml.constructor.ConstructorError(
                problem=f"duplicate key {format_path(path)} (first at line {first})",
                problem_mark=yaml.Mark("<text>", 0, line - 1, 0, None, 0),
            )
        return None if node is None else self.construct_document(node)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:  # noqa: ANN401
        """Construct one node; a scalar Python cannot represent becomes a marked YAML error."""
        try:
            return super().construct_object(node, deep=deep)
        except ValueError as exc:
            # PyYAML lets int("", 2) for `0b_` or datetime() for `2001-02-30` escape unmarked.
            shown = show_value(node.value) if isinstance(node, yaml.ScalarNode) else "value"
            raise yaml.constructor.ConstructorError(
                problem=f"cannot read {shown} as {node.tag.rsplit(':', 1)[-1]}: {exc}",
                problem_mark=node.start_mark,
            ) from None

    def _index(self, node: yaml.Node, path: KeyPath, open_nodes: set[int]) -> int:
        """Record lines below `node` and return how many nodes it expands to."""
        if id(node) in open_nodes:
            raise yaml.constructor.ConstructorError(
                problem="an alias refers to a node that contains it; recursive data is not allowed",
                problem_mark=node.start_mark,
            )
        if id(node) in self._expanded:
            # Second visit through an alias: the paths below keep the alias's line.
            return self._expanded[id(node)]
        open_nodes.add(id(node))
        size = 1
        if isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG:
            problem = text_problem(node.value)
            if problem is not None:
                self.bad_text.append((path, node.start_mark.line + 1, problem))
        if isinstance(node, yaml.MappingNode):
            size += self._index_mapping(node, path, open_nodes)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.lines[(*path, index)] = item.start_mark.line + 1
                size += self._index(item, (*path, index), open_nodes)
        open_nodes.discard(id(node))
        self._expanded[id(node)] = size
        if size > _MAX_EXPANDED_NODES:
            raise yaml.constructor.ConstructorError(
                problem=f"the document expands to more than {_MAX_EXPANDED_NODES} values",
                problem_mark=node.start_mark,
            )
        return size

    def _index_mapping(self, node: yaml.MappingNode, path: KeyPath, open_nodes: set[int]) -> int:
        size = 0
        first_line: dict[object, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                # Merged and complex keys have no path of their own (PyYAML checks them when
                # constructing); a side path keeps their lines off the explicit keys.
                side = (*path, key_node.tag)
                size += self._index(key_node, side, open_nodes)
                size += self._index(value_node, side, open_nodes)
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            problem = text_problem(key) if isinstance(key, str) else None
            if problem is not None:
                # Placed at the mapping that holds the key: a path cannot show the key itself.
                self.bad_text.append((path, line, f"key {key!r} {problem}"))
                continue
            if key in first_line:
                self.duplicates.append(((*path, _path_part(key)), line, first_line[key]))
            else:
                first_line[key] = line
            child = (*path, _path_part(key))
            self.lines[child] = line
            size += self._index(value_node, child, open_nodes)
        return size


class StrictLoader(_StrictLoading, yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and records the line of every key path."""


# libyaml's parser composes a 1,000-point site map with about a third of the pure-Python
# parser's peak memory (an agent keeps its peak: G7); its error messages differ, so a
# document it refuses is parsed again by StrictLoader for the messages people know.
_CSafeLoader: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)
_FastStrictLoader: type[StrictLoader] = (
    StrictLoader
    if _CSafeLoader is None
    else cast("type[StrictLoader]", type("_FastStrictLoader", (_StrictLoading, _CSafeLoader), {}))
)


def _path_part(key: object) -> str | int:
    if isinstance(key, str) or (isinstance(key, int) and not isinstance(key, bool)):
        return key
    return str(key)


def parse_yaml(text: str, file: str) -> ParsedYaml:
    """Load one YAML document, with the line of every key path and all duplicate keys."""
    try:
        try:
            loader, data = _load(_FastStrictLoader, text)
        except (yaml.YAMLError, RecursionError):
            if _FastStrictLoader is StrictLoader:
                raise
            loader, data = _load(StrictLoader, text)
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_issue(exc, file, text)]) from None
    except RecursionError:
        raise ConfigError(
            [ConfigIssue(file, None, "", "the document is nested too deeply")]
        ) from None
    duplicates = tuple(
        ConfigIssue(file, line, format_path(path), f"duplicate key (first at line {first})")
        for path, line, first in loader.duplicates
    )
    if loader.bad_text:
        # Before validation: the models would meet these texts, and pydantic cannot report a
        # lone surrogate; the document's other problems show once these are fixed.
        bad = [
            ConfigIssue(file, line, format_path(path), why) for path, line, why in loader.bad_text
        ]
        raise ConfigError(sorted([*duplicates, *bad], key=lambda issue: issue.line or 0))
    return ParsedYaml(file, data, dict(loader.lines), duplicates)


def _load(loader_class: type[StrictLoader], text: str) -> tuple[StrictLoader, object]:
    """The loader (with its lines and duplicates) and the data of one document."""
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        return loader, None if node is None else loader.construct_document(node)
    finally:
        loader.dispose()


def _yaml_issue(error: yaml.YAMLError, file: str, text: str) -> ConfigIssue:
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        message = error.problem or error.context or "invalid YAML"
        if error.context and error.problem:
            context_line = f" at line {error.context_mark.line + 1}" if error.context_mark else ""
            message = f"{error.problem} ({error.context}{context_line})"
        if mark is None:
            return ConfigIssue(file, None, "", message)
        return ConfigIssue(file, mark.line + 1, "", message, column=mark.column + 1)
    if isinstance(error, yaml.reader.ReaderError):
        line = text.count("\n", 0, error.position) + 1
        column = error.position - (text.rfind("\n", 0, error.position) + 1) + 1
        character = error.character
        shown = f"U+{character:04X}" if isinstance(character, int) else repr(character)
        return ConfigIssue(file, line, "", f"character {shown} is not allowed in YAML", column)
    return ConfigIssue(file, None, "", str(error))
