"""Topic names for a Unified Namespace: the templates of ``queue_name`` and
``metadata_queue_name`` (docs/uns.md).

Part 14 lets a writer group and each DataSetWriter name the broker queue (the MQTT topic) of
their messages instead of the standard tree: BrokerWriterGroupTransportDataType.QueueName
(OPC 10000-14 1.05 §6.4.2.3.1), BrokerDataSetWriterTransportDataType.QueueName (§6.4.2.5.1: it
overrides the group's, and is only valid when the writer's NetworkMessages carry its
DataSetMessages alone) and MetaDataQueueName (§6.4.2.5.5). A plant building a Unified Namespace
wants those topics to follow its ISA-95 hierarchy, so the configuration writes them as
templates: ``{enterprise}/{site}/{group}/{writer}``.

Variables: every name of the configuration's ``uns`` section, substituted as written (a value
may span levels: ``area: packaging/line4``), and three built-ins, each escaped as one topic level
the way the standard tree escapes names (:func:`~opcua_mqtt.core.topics.escape_level`):
``{publisher_id}``, ``{group}`` (the writer group's name) and ``{writer}`` (the DataSetWriter's
name; not in a template that names one topic for a whole group). ``map --topic-template``
adds ``{path}``, the browse path of the writer's object, and substitutes it when it writes the
configuration. Any other ``{...}``, or a brace that opens or closes no variable, is an error.

Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from opcua_mqtt.core.errors import OpcUaMqttError
from opcua_mqtt.core.messages.metadata import ConnectionMessage
from opcua_mqtt.core.topics import MessageType, TopicInfo, TopicTree, escape_level, topic_problem

__all__ = [
    "BUILTIN_VARIABLES",
    "VARIABLE_NAME",
    "TemplateError",
    "announced_topics",
    "expand",
    "queue_problem",
    "queue_variables",
    "template_variables",
]

#: The variables every template may use besides the ``uns`` section's.
BUILTIN_VARIABLES: Final = ("publisher_id", "group", "writer")
#: What a variable name looks like (the ``uns`` section's keys too).
VARIABLE_NAME: Final = re.compile(r"[a-z][a-z0-9_]*")
_PLACEHOLDER: Final = re.compile(r"\{([^{}]*)\}")


class TemplateError(OpcUaMqttError, ValueError):
    """A template that cannot be expanded; the message says why, naming the variable."""


def template_variables(template: str) -> list[str]:
    """The variable names ``template`` uses, in order; TemplateError for a malformed one."""
    names = []
    for match in _PLACEHOLDER.finditer(template):
        name = match.group(1)
        if not VARIABLE_NAME.fullmatch(name):
            raise TemplateError(
                f"{{{name}}} is not a variable name (lower-case letters, digits and '_', "
                "starting with a letter)"
            )
        names.append(name)
    rest = _PLACEHOLDER.sub("", template)
    if "{" in rest or "}" in rest:
        brace = "{" if "{" in rest else "}"
        raise TemplateError(f"a {brace!r} that is not part of a {{variable}}")
    return names


def expand(template: str, values: Mapping[str, str]) -> str:
    """``template`` with every ``{name}`` replaced by ``values[name]``.

    An unknown name raises TemplateError naming it and the variables there are, so a typo in a
    configuration is reported where it is instead of becoming a topic nobody subscribes to.
    """
    for name in template_variables(template):
        if name not in values:
            known = ", ".join(f"{{{v}}}" for v in sorted(values)) or "none"
            raise TemplateError(f"unknown template variable {{{name}}} (known here: {known})")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def queue_variables(
    uns: Mapping[str, str], publisher_id: str, group: str, writer: str | None = None
) -> dict[str, str]:
    """The variables of a template expanded for ``group`` (and ``writer``, when the topic is
    one writer's): the ``uns`` values as written, the names escaped as single levels."""
    values = dict(uns)
    values["publisher_id"] = escape_level(publisher_id)
    values["group"] = escape_level(group)
    if writer is not None:
        values["writer"] = escape_level(writer)
    return values


def queue_problem(topic: str, standard: TopicTree | None = None) -> str | None:
    """Why ``topic`` cannot be a custom queue name, or None.

    Besides what a broker refuses (:func:`~opcua_mqtt.core.topics.topic_problem`): a leading
    ``$`` (reserved for the broker, MQTT 5 §4.7.2, and not matched by ``#``), an empty level
    (``a//b``: an empty variable, almost always), and a topic inside the ``standard`` tree
    (``<prefix>/<encoding>/...``), where subscribers would read it as a standard topic naming
    other writers.
    """
    if problem := topic_problem(topic):
        return problem
    if topic.startswith("$"):
        return "it starts with '$', which MQTT reserves for the broker's own topics"
    if "" in topic.split("/"):
        return "it has an empty level (a leading, trailing or doubled '/')"
    if standard is not None:
        tree = f"{standard.prefix}/{standard.encoding}"
        if topic == tree or topic.startswith(tree + "/"):
            return (
                f"it lies in the standard topic tree {tree}/..., where it would be read as a "
                "standard topic (leave queue_name out to publish there)"
            )
    return None


def announced_topics(message: ConnectionMessage) -> dict[str, TopicInfo]:
    """The topics a publisher's ua-connection names outside the standard tree, with what they
    carry: the QueueName of bundled writer groups and writers (data) and the writers'
    MetaDataQueueName (metadata), Part 14 §6.4.2.3.1, §6.4.2.5.1, §6.4.2.5.5.

    A subscriber that finds data on such a topic knows whose it is as surely as it knows the
    ua-connection's (whose topic the broker's ACL ties to the publisher). A data topic several
    writers share names only what they have in common: the group, or no group at all.
    """
    found: dict[str, list[tuple[MessageType, str | None, str | None]]] = {}

    def add(topic: object, kind: MessageType, group: str | None, writer: str | None) -> None:
        if isinstance(topic, str) and topic and topic_problem(topic) is None:
            found.setdefault(topic, []).append((kind, group, writer))

    for g in message.connection.WriterGroups or []:
        add(getattr(g.TransportSettings, "QueueName", None), MessageType.DATA, g.Name, None)
        for w in g.DataSetWriters or []:
            t = w.TransportSettings
            add(getattr(t, "QueueName", None), MessageType.DATA, g.Name, w.Name)
            add(getattr(t, "MetaDataQueueName", None), MessageType.METADATA, g.Name, w.Name)
    out = {}
    for topic, uses in found.items():
        kinds = {kind for kind, _, _ in uses}
        groups = {group for _, group, _ in uses}
        writers = {(group, writer) for _, group, writer in uses if writer is not None}
        if len(kinds) > 1:
            continue  # data and metadata on one topic: not ours to make sense of
        group = groups.pop() if len(groups) == 1 else None
        writer = writers.pop()[1] if len(writers) == 1 and group is not None else None
        out[topic] = TopicInfo("", "json", kinds.pop(), message.publisher_id, group, writer)
    return out
