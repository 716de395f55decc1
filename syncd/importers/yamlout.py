"""A small writer for commented YAML: the same document always gives the same text.

PyYAML's emitter drops comments and picks quoting on its own, and an imported config is
mostly read by people, so the importers describe the document as :class:`Map` values whose
fields carry their comments, and :func:`dump` lays them out by hand: block mappings, two
spaces per level, lists of scalars in flow style (``folders: ["*", "!Trash"]``), comments
above a key or after its value.

A string is written plain only when YAML reads it back as the same string (so ``yes``,
``0755``, ``~`` or ``1e3`` are quoted); otherwise it is double-quoted with JSON escapes,
which are valid YAML. :func:`dump` never emits anchors, tags or multi-line scalars.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import yaml

__all__ = ["Field", "Map", "Scalar", "Value", "dump", "dump_fields", "scalar"]

Scalar = str | int | bool

_WIDTH: Final = 96
_INDENT: Final = "  "
# Characters a plain scalar may hold in block context; the first one is further limited,
# since YAML gives - ? : , [ ] { } # & * ! | > ' " % @ ` a meaning at the start.
_PLAIN_FIRST: Final = re.compile(r"[A-Za-z0-9_~/.$+=(]")
_PLAIN_REST: Final = re.compile(r"[A-Za-z0-9_~/.$+=()@%:,' -]*")
_FLOW_UNSAFE: Final = frozenset(",[]{}")


@dataclass(slots=True)
class Field:
    """One ``key: value`` line (or a key with a nested mapping) and its comments."""

    key: str
    value: Value
    comment: str | None = None
    """Written after the value on the same line (above the key if the line gets long)."""
    above: tuple[str, ...] = ()
    """Comment lines written before the key; each is wrapped to the page width."""


@dataclass(slots=True)
class Map:
    """A block mapping: its fields in the order they were added."""

    fields: list[Field] = field(default_factory=list)

    def add(
        self,
        key: str,
        value: Value,
        comment: str | None = None,
        above: Sequence[str] = (),
    ) -> None:
        self.fields.append(Field(key, value, comment, tuple(above)))

    def child(self, key: str, comment: str | None = None, above: Sequence[str] = ()) -> Map:
        """Add ``key:`` with a new, empty nested mapping and return that mapping."""
        sub = Map()
        self.fields.append(Field(key, sub, comment, tuple(above)))
        return sub

    def get(self, key: str) -> Value | None:
        for item in self.fields:
            if item.key == key:
                return item.value
        return None


Value = Scalar | list[str] | Map
"""What a field holds: a scalar, a list of strings (written in flow style) or a mapping."""


def _reads_back(text: str) -> bool:
    try:
        return bool(yaml.safe_load(text) == text)
    except yaml.YAMLError:
        return False


def scalar(value: Scalar, *, flow: bool = False) -> str:
    """``value`` as a YAML scalar: plain where that reads back the same, else double-quoted.

    ``flow`` is for items inside ``[...]``, where a comma or bracket would end the item.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    plain = (
        bool(value)
        and _PLAIN_FIRST.match(value[0]) is not None
        and _PLAIN_REST.fullmatch(value[1:]) is not None
        and not value.endswith((" ", ":"))
        and ": " not in value
        and not (flow and any(ch in _FLOW_UNSAFE for ch in value))
        and _reads_back(value)
    )
    if plain:
        return value
    return json.dumps(value, ensure_ascii=False)


def _key(key: str) -> str:
    return scalar(key, flow=True)


def _comment_lines(text: str, indent: str) -> list[str]:
    out: list[str] = []
    for paragraph in text.splitlines() or [""]:
        if not paragraph.strip():
            out.append(f"{indent}#")
            continue
        width = max(_WIDTH - len(indent) - 2, 30)
        for line in textwrap.wrap(paragraph, width, break_long_words=False) or [""]:
            out.append(f"{indent}# {line}")
    return out


def _value_text(value: Scalar | list[str]) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(scalar(item, flow=True) for item in value) + "]"
    return scalar(value)


def dump_fields(mapping: Map, level: int = 0) -> list[str]:
    """The lines of ``mapping`` indented ``level`` steps (no trailing newlines)."""
    indent = _INDENT * level
    lines: list[str] = []
    for item in mapping.fields:
        for text in item.above:
            lines.extend(_comment_lines(text, indent))
        head = f"{indent}{_key(item.key)}:"
        if isinstance(item.value, Map):
            if item.comment:
                lines.append(f"{head}  # {item.comment}")
            else:
                lines.append(head)
            lines.extend(dump_fields(item.value, level + 1))
            continue
        line = f"{head} {_value_text(item.value)}"
        if item.comment:
            trailing = f"{line}  # {item.comment}"
            if len(trailing) <= _WIDTH and "\n" not in item.comment:
                line = trailing
            else:
                lines.extend(_comment_lines(item.comment, indent))
        lines.append(line)
    return lines


def dump(document: Map, header: Sequence[str] = ()) -> str:
    """The whole document as text: the ``header`` comment paragraphs, then the mapping."""
    lines: list[str] = []
    for paragraph in header:
        lines.extend(_comment_lines(paragraph, ""))
    if header:
        lines.append("")
    lines.extend(dump_fields(document))
    return "\n".join(lines) + "\n"
