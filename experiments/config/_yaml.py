"""Safe, bounded YAML loading: no tags, no duplicate keys, no alias bombs, no runaway nesting.

Stage: config. May import experiments.errors and the config stage.

A duplicate key would silently overwrite a value (a typo hidden in an audit). Aliases
share nodes, so a 1.5 KB file of nested aliases ("billion laughs") can stand for
billions of values: the composed node graph is measured (memoised per node, so
shared nodes cost once) and refused past MAX_NODES or MAX_DEPTH before any Python
object is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from experiments.config._quote import quoted, shortened
from experiments.errors import ConfigError

MAX_NODES = 100_000
"""Nodes a config may expand to, counting every alias as a copy of what it names."""
MAX_DEPTH = 64
"""Levels a config may nest (a real config needs about six)."""
MAX_BYTES = 10 * 2**20
"""Size of a config file (a real one is a few KB; documents belong in data files)."""


class _Limit(Exception):
    """A document over MAX_NODES or MAX_DEPTH, or infinite; the message names the line where it was found."""

    def __init__(self, mark: yaml.Mark, message: str) -> None:
        super().__init__(f"line {mark.line + 1}: {message}")


_TOO_DEEP = f"the document nests deeper than {MAX_DEPTH} levels; a config needs only a few"
_TOO_BIG = (
    f"the document expands to more than {MAX_NODES:,} nodes (aliases `*name` count as copies of what they name); "
    "write the values out, or use fewer aliases"
)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a mapping with the same key twice and stops composing past MAX_DEPTH."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def fetch_flow_collection_start(self, TokenClass: type) -> None:  # noqa: N803 - yaml's own signature
        # The scanner looks ahead over every open `[`/`{` for each token: stop deep flow nesting at once.
        if self.flow_level >= MAX_DEPTH:
            raise _Limit(self.get_mark(), _TOO_DEEP)
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        # The composer recurses once per level: refuse deep documents before Python's stack runs out.
        if self._depth >= MAX_DEPTH:
            raise _Limit(self.peek_event().start_mark, _TOO_DEEP)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(
                f"key {quoted(key)} appears twice (line {key_node.start_mark.line + 1}); keep one",
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _measure(node: yaml.Node, depth: int, memo: dict[int, tuple[int, int]], open_nodes: set[int]) -> tuple[int, int]:
    """(nodes, height) of `node` with every alias expanded, refusing past the limits; `depth` is where it sits."""
    key = id(node)
    if key in memo:
        size, height = memo[key]
    else:
        if key in open_nodes:
            raise _Limit(
                node.start_mark, "an alias names a node that contains it, so the document is infinite; remove the alias"
            )
        if depth > MAX_DEPTH:
            raise _Limit(node.start_mark, _TOO_DEEP)
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            children = []
        open_nodes.add(key)
        size, height = 1, 1
        for child in children:
            child_size, child_height = _measure(child, depth + 1, memo, open_nodes)
            size, height = size + child_size, max(height, child_height + 1)
            if size > MAX_NODES:
                raise _Limit(node.start_mark, _TOO_BIG)
        open_nodes.discard(key)
        memo[key] = (size, height)
    if depth + height - 1 > MAX_DEPTH:
        raise _Limit(node.start_mark, _TOO_DEEP)
    return size, height


def _parse(text: str) -> Any:
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _measure(node, 1, {}, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file as plain data (no tags, no code), with errors that name the file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(
                f"config file {str(path)!r} is {size:,} bytes, more than the {MAX_BYTES:,} a config may be; "
                "put documents in a data file (data.path)"
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {error}") from None
    try:
        return _parse(text)
    except _Limit as error:
        raise ConfigError(f"{path}: {error}") from None
    except RecursionError:
        raise ConfigError(f"{path}: {_TOO_DEEP}") from None
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {shortened(str(error))}") from None
