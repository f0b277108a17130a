"""The custom topics of a configuration: ``queue_name`` and ``metadata_queue_name`` of writer
groups and writers, expanded from their templates (:mod:`opcua_mqtt.core.uns`) and checked.

Which template a topic comes from (Part 14 §6.4.2.3.1, §6.4.2.5.1, §6.4.2.5.5):

* a writer's data topic: its own ``queue_name``, else its group's, expanded for the writer (so
  ``{writer}`` gives each writer its own topic, and a group template without it makes the
  writers share one); in a group with ``bundle_writers`` the writers share the group's topic
  and may not set their own;
* a writer's metadata topic: its own ``metadata_queue_name``, else its group's, expanded for
  the writer (Part 14 has no group MetaDataQueueName: the group's is a default for its writers);
* the group's own topic (its WriterGroup QueueName, where a bundled group publishes): its
  ``queue_name`` expanded without ``{writer}``;
* none set: the standard tree (core/topics.py).

Each writer's retained metadata needs a topic of its own, apart from every data topic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opcua_mqtt.core.config.model import Path
from opcua_mqtt.core.config.report import Report, show
from opcua_mqtt.core.topics import TopicTree
from opcua_mqtt.core.uns import (
    BUILTIN_VARIABLES,
    TemplateError,
    expand,
    queue_problem,
    queue_variables,
    template_variables,
)


@dataclass
class QueueNames:
    """The expanded topics; None where the standard tree applies."""

    groups: dict[int, str | None] = field(default_factory=dict)
    data: dict[tuple[int, int], str | None] = field(default_factory=dict)
    metadata: dict[tuple[int, int], str | None] = field(default_factory=dict)


def queue_names(data: Mapping[str, Any], report: Report | None = None) -> QueueNames:
    """The custom topics of the configuration ``data``, problems added to ``report``.

    Without a report (building a configuration already checked) a problem raises ValueError.
    """
    return _Expander(data, report).run()


class _Expander:
    def __init__(self, data: Mapping[str, Any], report: Report | None) -> None:
        self.data = data
        self.report = report
        self.uns: dict[str, str] = dict(data.get("uns") or {})
        self.publisher_id = str(data["publisher_id"])
        try:
            prefix = (data.get("mqtt") or {}).get("topic_prefix", "opcua")
            self.standard: TopicTree | None = TopicTree(prefix=prefix)
        except ValueError:
            self.standard = None  # reported by the topic_prefix rule
        self.reported: set[tuple[Path, str]] = set()
        self.out = QueueNames()
        self.seen: dict[str, tuple[str, str]] = {}  # topic -> (kind, whose) of its first claim

    def problem(self, path: Path, message: str) -> None:
        if self.report is None:
            raise ValueError(f"{'/'.join(map(str, path))}: {message}")
        if (path, message) not in self.reported:
            self.reported.add((path, message))
            self.report.add(path, message)

    def run(self) -> QueueNames:
        for name in self.uns:
            if name in BUILTIN_VARIABLES:
                self.problem(
                    ("uns", name),
                    f"{name!r} is a built-in template variable "
                    f"({', '.join(BUILTIN_VARIABLES)}): choose another name",
                )
        for gi, group in enumerate(self.data["writer_groups"]):
            self.group(gi, group)
        return self.out

    def group(self, gi: int, group: Mapping[str, Any]) -> None:
        gpath: Path = ("writer_groups", gi)
        bundled = bool(group.get("bundle_writers", False))
        template = group.get("queue_name")
        own: str | None = None
        if template is not None:
            try:
                per_writer = "writer" in template_variables(template)
            except TemplateError as e:
                self.problem((*gpath, "queue_name"), str(e))
                return
            if per_writer and bundled:
                self.problem(
                    (*gpath, "queue_name"),
                    "the writers of a group with bundle_writers share one NetworkMessage, so "
                    "its queue_name cannot name {writer}",
                )
            elif not per_writer:
                own = self.topic(template, (*gpath, "queue_name"), group["name"], None)
        self.out.groups[gi] = own
        for wi, writer in enumerate(group["writers"]):
            wpath: Path = (*gpath, "writers", wi)
            if bundled and writer.get("queue_name") is not None:
                self.problem(
                    (*wpath, "queue_name"),
                    "the writers of a group with bundle_writers share the group's queue "
                    "(Part 14 §6.4.2.5.1): set queue_name on the writer group",
                )
            if bundled:
                data_topic = own
            else:
                data_topic = self.writer_topic(group, gpath, writer, wpath, "queue_name")
            meta_topic = self.writer_topic(group, gpath, writer, wpath, "metadata_queue_name")
            self.out.data[(gi, wi)] = data_topic
            self.out.metadata[(gi, wi)] = meta_topic
            who = f"writer {group['name']}/{writer['name']}"
            if data_topic is not None:
                self.claim(data_topic, "data", self.source(writer, wpath, gpath, "queue_name"), who)
            if meta_topic is not None:
                path = self.source(writer, wpath, gpath, "metadata_queue_name")
                self.claim(meta_topic, "metadata", path, who)

    @staticmethod
    def source(writer: Mapping[str, Any], wpath: Path, gpath: Path, key: str) -> Path:
        return (*wpath, key) if writer.get(key) is not None else (*gpath, key)

    def writer_topic(
        self,
        group: Mapping[str, Any],
        gpath: Path,
        writer: Mapping[str, Any],
        wpath: Path,
        key: str,
    ) -> str | None:
        template = writer.get(key)
        path: Path = (*wpath, key)
        if template is None:
            template, path = group.get(key), (*gpath, key)
        if template is None:
            return None
        return self.topic(template, path, group["name"], writer["name"])

    def topic(self, template: str, path: Path, group: str, writer: str | None) -> str | None:
        values = queue_variables(self.uns, self.publisher_id, group, writer)
        try:
            topic = expand(template, values)
        except TemplateError as e:
            self.problem(path, str(e))
            return None
        if problem := queue_problem(topic, self.standard):
            for_whom = f" for writer {writer!r}" if writer is not None and "{" in template else ""
            self.problem(
                path,
                f"expected an MQTT topic name, got {show(topic)}{for_whom}: {problem}",
            )
            return None
        return topic

    def claim(self, topic: str, kind: str, path: Path, who: str) -> None:
        """Each metadata topic belongs to one writer, and never carries data."""
        seen = self.seen.get(topic)
        if seen is None:
            self.seen[topic] = (kind, who)
            return
        other_kind, other = seen
        if kind == "data" and other_kind == "data":
            return  # writers may share a data topic (their DataSetWriterIds tell them apart)
        what = "retained metadata" if "metadata" in (kind, other_kind) else kind
        self.problem(
            path,
            f"{who} would publish its {kind} on {topic!r}, which is already the {other_kind} "
            f"topic of {other}: {what} needs a topic of its own",
        )
