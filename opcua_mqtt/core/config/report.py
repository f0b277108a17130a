"""Where an issue is: the collector of one source's issues, with the YAML line of each path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import yaml

from opcua_mqtt.core.config.model import ConfigIssue, Path, Severity

#: libyaml's parser when PyYAML was built with it: ten times faster on big mapped files.
Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Lines:
    """Line numbers of the members of a composed YAML document. JSON composes as YAML too, but
    only when a line is asked for: a valid JSON file is never parsed twice."""

    def __init__(self) -> None:
        self.lines: dict[Path, int] = {}
        self.duplicates: list[tuple[Path, int, int]] = []  # (path, line, line of the first)
        self.pending: str | None = None  # JSON text not composed yet

    def line(self, path: Path) -> int | None:
        if self.pending is not None:
            text, self.pending = self.pending, None
            self.compose(text)
        for n in range(len(path), -1, -1):
            found = self.lines.get(path[:n])
            if found is not None:
                return found
        return None

    def compose(self, text: str) -> bool:
        """Read the lines of ``text``; False when PyYAML cannot (JSON with tabs, say)."""
        try:
            node = _compose(text)
        except (yaml.YAMLError, RecursionError, ValueError):
            return False
        if node is not None:
            self.walk(node, ())
        return True

    def walk(self, node: yaml.Node, path: Path, active: frozenset[int] = frozenset()) -> None:
        if path not in self.lines:
            self.lines[path] = node.start_mark.line + 1
        if id(node) in active:  # an alias inside its own anchor
            return
        active = active | {id(node)}
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else None
                if name is None:
                    continue
                line = key.start_mark.line + 1
                if name in seen:
                    self.duplicates.append(((*path, name), line, seen[name]))
                    continue
                seen[name] = line
                self.lines[(*path, name)] = line
                self.walk(value, (*path, name), active)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.walk(item, (*path, i), active)


def _compose(text: str) -> yaml.Node | None:
    loader = Loader(text)
    try:
        node: yaml.Node | None = loader.get_single_node()
        return node
    finally:
        loader.dispose()


class Report:
    """Collects issues for one source, turning paths into text and lines."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines = _Lines()
        self.issues: list[ConfigIssue] = []
        self._seen: set[ConfigIssue] = set()  # a large file can bring 100,000 warnings

    def add(
        self, path: Path, message: str, severity: Severity = "error", line: int | None = None
    ) -> None:
        text = "/".join(str(p) for p in path)
        where = line if line is not None else self.lines.line(path)
        issue = ConfigIssue(self.source, text, where, message, severity)
        if issue not in self._seen:
            self._seen.add(issue)
            self.issues.append(issue)

    def sorted(self) -> list[ConfigIssue]:
        return sorted(self.issues, key=lambda i: (i.line or 0, i.path, i.message))

    @property
    def failed(self) -> bool:
        return any(i.severity == "error" for i in self.issues)


#: Warnings of one message shown one by one; the rest are one line with their number.
FOLD_AFTER: Final = 3


def folded(issues: Sequence[ConfigIssue], keep: int = FOLD_AFTER) -> list[str]:
    """The issues as lines, in order, but of the warnings that share a message only the first
    ``keep``; the others are counted in one line at the end (a plant mapped with ``ns=<index>``
    NodeIds has one such warning per field: 100,000 identical lines hide everything else)."""
    same: dict[tuple[str, str], list[ConfigIssue]] = {}
    out = []
    for issue in issues:
        if issue.severity == "warning":
            group = same.setdefault((issue.source, issue.message), [])
            group.append(issue)
            if len(group) > keep:
                continue
        out.append(str(issue))
    for (source, message), group in same.items():
        if rest := group[keep:]:
            lines = [i.line for i in rest if i.line is not None]
            where = f" (lines {min(lines):,}-{max(lines):,})" if lines else ""
            out.append(f"{source}: warning: {len(rest):,} more like this{where}: {message}")
    return out


def show(value: Any) -> str:
    """A value as the message shows it: strings quoted, containers by kind."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple | set):
        return "a list"
    return f"a {type(value).__name__}"
