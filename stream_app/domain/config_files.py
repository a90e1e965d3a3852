"""Reading and checking the project's small YAML or TOML files (SLA, simulation), strictly.

A typo in such a file would silently change what the program does, so the reader refuses what
it does not understand (an unknown format, duplicate YAML keys) and every message names the
file, and where it applies the exact key path. Each loader passes its own error class (a
ValueError), so its callers keep catching the one they know.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import yaml

FORMATS = (".yaml", ".yml", ".toml")


class ConfigFile(NamedTuple):
    data: object  # the parsed content
    source: str  # the file's name, as messages show it


def read_config_file(
    path: str | os.PathLike[str] | None, error: type[ValueError]
) -> ConfigFile | None:
    """The file's parsed content and name; None for no path (None or "").

    The format is the extension's (.yaml, .yml or .toml); raises `error` for another one, a
    file that cannot be read, or content that does not parse (duplicate YAML keys included).
    """
    if path is None or os.fspath(path) == "":
        return None
    source = os.fspath(path)
    suffix = Path(source).suffix.lower()
    if suffix not in FORMATS:
        raise error(
            f"{source}: unsupported format {suffix or '(no extension)'}: use .yaml, .yml or .toml"
        )
    try:
        text = Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{source}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{source}: cannot read: {exc}") from None
    data: object
    try:
        data = tomllib.loads(text) if suffix == ".toml" else yaml.load(text, Loader=_StrictLoader)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        kind = "TOML" if suffix == ".toml" else "YAML"
        raise error(f"{source}: not valid {kind}: {exc}") from None
    return ConfigFile(data, source)


def mapping(data: object, path: str, source: str, error: type[ValueError]) -> Mapping[Any, Any]:
    """`data` as a mapping; None (an empty document or section) is an empty one."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise error(f"{source}: {path or 'the top level'} must be a mapping, got {shorten(data)}")
    return data


def no_unknown_keys(
    data: Mapping[Any, Any],
    known: tuple[str, ...],
    path: str,
    source: str,
    error: type[ValueError],
) -> None:
    """Raise `error` for the first key not in `known`, suggesting the closest known one."""
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
            raise error(f"{source}: unknown key {key_path(path, str(key))}{hint}")


def key_path(parent: str, key: str) -> str:
    """A TOML-style dotted key path; a key that is not a bare word is quoted."""
    bare = key and all(ch.isascii() and (ch.isalnum() or ch in "_-") for ch in key)
    part = key if bare else f'"{key}"'
    return f"{parent}.{part}" if parent else part


def shorten(value: object, limit: int = 60) -> str:
    """The value's repr, cut to `limit` characters for a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: PyYAML would silently keep the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges are resolved by the base class
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable):
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key!r}",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)
