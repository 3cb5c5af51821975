"""YAML composing with limits on nesting depth and alias expansion, checked while the document is read.

PyYAML composes aliases as shared nodes, so a few hundred bytes can stand for billions of nodes once walked
(an alias bomb), and a self-referencing alias makes a cycle. ``compose`` counts every node as it would be once
aliases are expanded, and refuses the document before anything is walked or constructed.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml
import yaml.constructor

MAX_DEPTH = 32
MAX_NODES = 20_000


class YAMLLimitError(yaml.MarkedYAMLError):
    """A document over a limit; the mark says where it was crossed."""

    def __init__(self, problem: str, mark: yaml.Mark | None):
        super().__init__(problem=problem, problem_mark=mark)


@dataclass(frozen=True)
class _Extent:
    """A finished anchored node's size and height once its aliases are expanded."""

    nodes: int
    height: int


class BoundedLoader(yaml.SafeLoader):
    """A SafeLoader whose composer refuses documents deeper or, aliases expanded, larger than the limits, and whose
    constructor refuses a key given twice in one mapping (plain YAML keeps the last, silently dropping the first)."""

    def __init__(self, text: str, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES):
        super().__init__(text)
        self.max_depth = max_depth
        self.max_nodes = max_nodes
        self._depth = 0
        self._nodes = 0
        self._heights: list[int] = []
        self._extents: dict[int, _Extent] = {}

    def compose_node(self, parent, index):
        """Count the node (an alias counts as everything it stands for) before composing its children."""
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None:
                extent = self._extents.get(id(target))
                if extent is None:
                    raise YAMLLimitError(f"alias *{event.anchor} refers to itself", event.start_mark)
                self._count(extent.nodes, extent.height, event.start_mark)
            return super().compose_node(parent, index)
        start = self._nodes
        self._count(1, 1, event.start_mark)
        self._depth += 1
        self._heights.append(0)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            height = self._heights.pop() + 1
        if self._heights:
            self._heights[-1] = max(self._heights[-1], height)
        if event.anchor is not None:
            self._extents[id(node)] = _Extent(self._nodes - start, height)
        return node

    def compose_document(self):
        """Compose one document, forgetting its anchors' extents with its anchors."""
        node = super().compose_document()
        self._extents.clear()
        return node

    def construct_mapping(self, node, deep=False):
        """A mapping whose keys each appear once; merged keys (``<<``) may still be overridden."""
        first: dict[object, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node)
            if key in first:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}' (first given on line {first[key]})", key_node.start_mark
                )
            first[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)

    def _count(self, nodes: int, height: int, mark: yaml.Mark) -> None:
        """Add nodes to the expanded total and check it, and the expanded depth, against the limits."""
        self._nodes += nodes
        if self._nodes > self.max_nodes:
            raise YAMLLimitError(f"more than {self.max_nodes} values once aliases are expanded (an alias bomb?)", mark)
        if self._depth + height > self.max_depth:
            raise YAMLLimitError(f"nested more than {self.max_depth} levels deep", mark)
        if self._heights:
            self._heights[-1] = max(self._heights[-1], height)


def load(text: str):
    """One YAML document as Python values, within the limits and with every key given once."""
    loader = BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
