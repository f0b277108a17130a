"""The standard MQTT topic tree of OPC 10000-14 (PubSub) 1.05, §7.3.4.7.

(The clause is §7.3.5.7 in 1.05.02 and §7.3.4.7 from 1.05.04 on; the content is the same.)

Form: ``<Prefix>/<Encoding>/<MessageType>/<PublisherId>[/<WriterGroup>[/<DataSetWriter>]]``
with prefix ``opcua`` and encoding ``json`` (or ``uadp``, Table 206) by default. Which name
levels each message type takes, and whether it is published RETAINED, is Table 204.

Escaping of name levels
-----------------------
Part 14 puts PublisherId, WriterGroup and DataSetWriter names into topic levels verbatim and says
nothing about names that contain MQTT syntax. Verbatim, a name ``a/b`` would add a level, ``+`` or
``#`` would make the topic unpublishable, and NUL is forbidden by MQTT 5 §4.7.3. So every name level
is percent-encoded (RFC 3986 style, UTF-8 bytes, upper-case hex) for exactly these characters:

- ``%`` itself (so that the encoding is reversible),
- the MQTT separator and wildcards ``/``, ``+``, ``#``,
- C0 and C1 control characters U+0000-U+001F and U+007F-U+009F, and Unicode noncharacters
  (U+FDD0-U+FDEF and U+xFFFE/U+xFFFF), which MQTT 5 §1.5.4 says a topic SHOULD NOT contain,
- lone surrogates, which cannot be written as UTF-8 at all.

The empty name is written as a lone ``%``: an empty level is legal MQTT but matches ``+``
ambiguously and is easily produced by mistake, and a lone ``%`` can never come from escaping a
non-empty name (an escape is always ``%`` plus two hex digits). Every other character, including
non-ASCII letters and ``$``, is left alone, so ordinary names stay readable and a plain Part 14
subscriber sees the same topic it would expect.

The prefix may span several levels (``plant1/opcua``); it is configuration, not a name, so it is
validated rather than escaped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from opcua_mqtt.core.errors import DecodeError

__all__ = [
    "DEFAULT_ENCODING",
    "DEFAULT_PREFIX",
    "EMPTY_NAME_LEVEL",
    "ENCODINGS",
    "MAX_TOPIC_BYTES",
    "MessageType",
    "TopicInfo",
    "TopicTree",
    "escape_level",
    "is_retained",
    "parse_topic",
    "string_problem",
    "topic_problem",
    "unescape_level",
]

DEFAULT_PREFIX: Final = "opcua"
DEFAULT_ENCODING: Final = "json"
#: Encodings of Part 14 Table 206 (TransportProfileUri -> <Encoding> level).
ENCODINGS: Final = frozenset({"json", "uadp"})
#: The topic level that stands for an empty name (see module docstring).
EMPTY_NAME_LEVEL: Final = "%"
#: MQTT 5 §1.5.3: a UTF-8 string (so a topic name) is at most 65,535 bytes.
MAX_TOPIC_BYTES: Final = 65_535


class MessageType(StrEnum):
    """The <MessageType> topic level (Part 14 Table 204)."""

    DATA = "data"
    METADATA = "metadata"
    APPLICATION = "application"
    ENDPOINTS = "endpoints"
    STATUS = "status"
    CONNECTION = "connection"
    ACTION_REQUEST = "action-request"
    ACTION_RESPONSE = "action-response"
    ACTION_METADATA = "action-metadata"
    ACTION_RESPONDER = "action-responder"


# Part 14 Table 204, RETAIN column.
_RETAINED: Final = frozenset(
    {
        MessageType.METADATA,
        MessageType.APPLICATION,
        MessageType.ENDPOINTS,
        MessageType.STATUS,
        MessageType.CONNECTION,
        MessageType.ACTION_METADATA,
        MessageType.ACTION_RESPONDER,
    }
)

# How many name levels (PublisherId, WriterGroup, DataSetWriter) follow <MessageType>, as
# (minimum, maximum), from the topic forms of §7.3.4.7.3-§7.3.4.7.12.
_NAME_LEVELS: Final[dict[MessageType, tuple[int, int]]] = {
    MessageType.DATA: (2, 3),  # §7.3.4.7.3: <PublisherId>/<WriterGroup>[/<DataSetWriter>]
    MessageType.METADATA: (3, 3),  # §7.3.4.7.4
    MessageType.APPLICATION: (1, 1),  # §7.3.4.7.5
    MessageType.ENDPOINTS: (1, 1),  # §7.3.4.7.6
    MessageType.STATUS: (1, 1),  # §7.3.4.7.7
    MessageType.CONNECTION: (1, 1),  # §7.3.4.7.8
    MessageType.ACTION_REQUEST: (2, 2),  # §7.3.4.7.9: <Responder>/<WriterGroup>
    MessageType.ACTION_RESPONSE: (2, 2),  # §7.3.4.7.10
    MessageType.ACTION_RESPONDER: (1, 1),  # §7.3.4.7.11
    MessageType.ACTION_METADATA: (3, 3),  # §7.3.4.7.12
}

_LEVEL_NAMES: Final = ("PublisherId", "WriterGroup", "DataSetWriter")


def is_retained(message_type: MessageType) -> bool:
    """Whether Part 14 Table 204 publishes this message type with the RETAIN flag.

    Retained discovery messages let a subscriber that connects late learn metadata and status at
    once; data is never retained, so nobody mistakes an old sample for a current one.
    """
    return message_type in _RETAINED


# --- escaping ----------------------------------------------------------------------------------


def _must_escape(cp: int) -> bool:
    return (
        cp < 0x20
        or 0x7F <= cp <= 0x9F
        or 0xD800 <= cp <= 0xDFFF
        or 0xFDD0 <= cp <= 0xFDEF
        or (cp & 0xFFFE) == 0xFFFE
    )


def _char_class(literal: str) -> str:
    # ``literal`` plus the characters of _must_escape, as one regex character class.
    ranges = [
        (0x00, 0x1F),
        (0x7F, 0x9F),
        (0xD800, 0xDFFF),
        (0xFDD0, 0xFDEF),
    ]
    ranges += [(plane | 0xFFFE, plane | 0xFFFF) for plane in range(0, 0x110000, 0x10000)]
    parts = "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in ranges)
    return f"[{literal}{parts}]"


_ESCAPE_RE: Final = re.compile(_char_class("%/+#"))
_REFUSED_RE: Final = re.compile(_char_class(""))
_PERCENT_RUN_RE: Final = re.compile(r"(?:%[0-9A-Fa-f]{2})+")


def _percent(match: re.Match[str]) -> str:
    raw = match.group().encode("utf-8", "surrogatepass")
    return "".join(f"%{byte:02X}" for byte in raw)


def escape_level(name: str) -> str:
    """Turn a PublisherId / WriterGroup / DataSetWriter name into one safe topic level.

    Names come from configuration and OPC UA browse names, so they may contain anything; the
    escape keeps every name in exactly one level and makes :func:`unescape_level` its inverse.
    """
    if not name:
        return EMPTY_NAME_LEVEL
    return _ESCAPE_RE.sub(_percent, name)


def unescape_level(level: str, path: str = "topic") -> str:
    """Inverse of :func:`escape_level`; ``path`` names the level in a :class:`DecodeError`.

    Upper- and lower-case hex digits are both accepted. A ``%`` that does not start a valid
    escape, a wildcard, or an empty level cannot come from :func:`escape_level` and is rejected,
    so that two different names never parse to the same one.
    """
    if level == EMPTY_NAME_LEVEL:
        return ""
    if not level:
        raise DecodeError(path, "empty topic level (an empty name is written as '%')")
    if "+" in level or "#" in level:
        raise DecodeError(path, f"wildcard in topic level {level!r}")
    if "%" not in level:
        return level
    out: list[str] = []
    pos = 0
    for match in _PERCENT_RUN_RE.finditer(level):
        out.append(_check_plain(level[pos : match.start()], level, path))
        raw = bytes(int(match.group()[i + 1 : i + 3], 16) for i in range(0, len(match.group()), 3))
        try:
            out.append(raw.decode("utf-8", "surrogatepass"))
        except UnicodeDecodeError as exc:
            raise DecodeError(path, f"escape in {level!r} is not UTF-8: {exc.reason}") from None
        pos = match.end()
    out.append(_check_plain(level[pos:], level, path))
    return "".join(out)


def _check_plain(chunk: str, level: str, path: str) -> str:
    if "%" in chunk:
        raise DecodeError(path, f"'%' not followed by two hex digits in {level!r}")
    return chunk


def string_problem(text: str) -> str | None:
    """Why a broker would refuse ``text`` as an MQTT UTF-8 string (a topic, a Response Topic,
    any text property), or None when it would take it.

    At most 65,535 bytes (MQTT 5 §1.5.4), and none of the characters :func:`escape_level`
    escapes besides ``%``, ``/`` and the wildcards: §1.5.4 forbids NUL and surrogates and says
    the C0 and C1 controls and the noncharacters SHOULD NOT appear; Mosquitto (2.0.11, measured)
    refuses them all, by dropping the connection. A client that replays unacknowledged packets
    after a reconnect, as gmqtt does, is then dropped again and again.
    """
    if bad := _REFUSED_RE.search(text):
        return f"it contains U+{ord(bad.group()):04X} (a control, noncharacter or surrogate)"
    size = len(text.encode("utf-8"))
    if size > MAX_TOPIC_BYTES:
        return f"it is {size} bytes long, MQTT allows {MAX_TOPIC_BYTES}"
    return None


def topic_problem(topic: str, *, wildcards: bool = False) -> str | None:
    """Why a broker would refuse ``topic`` as a topic name (with ``wildcards``: as a topic
    filter), or None when it would take it; Mosquitto drops the connection for each reason.

    The rules of :func:`string_problem`, not empty (MQTT 5 §4.7.3), and wildcards only in a
    filter, each filling a whole level, ``#`` only as the last one (§4.7.1).
    """
    if not topic:
        return "it is empty"
    if problem := string_problem(topic):
        return problem
    if not wildcards:
        return "it contains a wildcard ('+' or '#')" if "+" in topic or "#" in topic else None
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if ("+" in level or "#" in level) and level not in ("+", "#"):
            return f"a wildcard shares level {level!r} with other characters"
        if level == "#" and i < len(levels) - 1:
            return "'#' is not the last level"
    return None


# --- prefix and encoding validation ------------------------------------------------------------


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic filter matching (MQTT 5 §4.7): ``+`` one level, ``#`` the rest."""
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    for i, f in enumerate(f_levels):
        if f == "#":
            return not (i == 0 and topic.startswith("$"))
        if i >= len(t_levels):
            return False
        if f != "+" and f != t_levels[i]:
            return False
        if f == "+" and i == 0 and topic.startswith("$"):
            return False
    return len(f_levels) == len(t_levels)


def _check_prefix(prefix: str) -> None:
    """Reject prefixes that would make the tree unsubscribable or ambiguous."""
    if not prefix:
        raise ValueError("topic prefix must not be empty")
    if prefix.startswith("$"):
        # MQTT 5 §4.7.2: '$' topics are reserved for the broker and not matched by '#' or '+'.
        raise ValueError(f"topic prefix {prefix!r} must not start with '$'")
    for level in prefix.split("/"):
        if not level:
            raise ValueError(f"topic prefix {prefix!r} has an empty level")
        bad = [c for c in level if c in "+#" or _must_escape(ord(c))]
        if bad:
            raise ValueError(f"topic prefix {prefix!r} contains {bad[0]!r}")


def _check_encoding(encoding: str) -> None:
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {sorted(ENCODINGS)}, not {encoding!r}")


# --- the tree ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """What a topic of the standard tree says: the decoded, unescaped levels."""

    prefix: str
    encoding: str
    message_type: MessageType
    publisher_id: str
    writer_group: str | None = None
    dataset_writer: str | None = None

    @property
    def retain(self) -> bool:
        """See :func:`is_retained`."""
        return is_retained(self.message_type)

    def disagreement(
        self,
        message_type: MessageType,
        publisher_id: str | None,
        writer_group: str | None = None,
        dataset_writer: str | None = None,
    ) -> str | None:
        """What a message found on this topic says against it, or None.

        The broker's ACL grants topics, not message contents: a message is only as much a
        publisher's as its topic, so one whose own names (None: the message does not say)
        differ from the topic levels, or whose kind differs from the topic's, speaks for
        someone it may not. The answer completes "message on <topic> ...".
        """
        if message_type is not self.message_type:
            return f"is a {message_type.value} message, the topic is for {self.message_type.value}"
        for level, topic_name, named in (
            ("PublisherId", self.publisher_id, publisher_id),
            ("WriterGroup", self.writer_group, writer_group),
            ("DataSetWriter", self.dataset_writer, dataset_writer),
        ):
            if named is not None and topic_name is not None and named != topic_name:
                return f"names {level} {named!r}"
        return None


@dataclass(frozen=True, slots=True)
class TopicTree:
    """One publisher's view of the topic tree: prefix and encoding fixed, names per call.

    Every builder escapes names with :func:`escape_level` and raises :class:`ValueError` when the
    combination of names does not fit the message type (Part 14 §7.3.4.7), so a misconfigured
    bridge fails at start-up rather than publishing to a topic nobody subscribes to.
    """

    prefix: str = DEFAULT_PREFIX
    encoding: str = DEFAULT_ENCODING

    def __post_init__(self) -> None:
        _check_prefix(self.prefix)
        _check_encoding(self.encoding)

    # builders

    def topic(
        self,
        message_type: MessageType,
        publisher_id: str,
        writer_group: str | None = None,
        dataset_writer: str | None = None,
    ) -> str:
        """The topic for any message type; the specific builders below are shorthands."""
        names = _names(publisher_id, writer_group, dataset_writer)
        low, high = _NAME_LEVELS[message_type]
        if not low <= len(names) <= high:
            raise ValueError(
                f"{message_type.value} topic takes {_describe(low, high)}, got {len(names)}"
            )
        levels = [self.prefix, self.encoding, message_type.value]
        levels += [escape_level(n) for n in names]
        return _finish("/".join(levels))

    def data(self, publisher_id: str, writer_group: str, dataset_writer: str | None = None) -> str:
        """§7.3.4.7.3; per DataSetWriter when that writer has its own QueueName."""
        return self.topic(MessageType.DATA, publisher_id, writer_group, dataset_writer)

    def metadata(self, publisher_id: str, writer_group: str, dataset_writer: str) -> str:
        """§7.3.4.7.4."""
        return self.topic(MessageType.METADATA, publisher_id, writer_group, dataset_writer)

    def status(self, publisher_id: str) -> str:
        """§7.3.4.7.7; also the natural MQTT last-will topic."""
        return self.topic(MessageType.STATUS, publisher_id)

    def connection(self, publisher_id: str) -> str:
        """§7.3.4.7.8."""
        return self.topic(MessageType.CONNECTION, publisher_id)

    def application(self, publisher_id: str) -> str:
        """§7.3.4.7.5."""
        return self.topic(MessageType.APPLICATION, publisher_id)

    def endpoints(self, publisher_id: str) -> str:
        """§7.3.4.7.6."""
        return self.topic(MessageType.ENDPOINTS, publisher_id)

    # subscriber side

    def filter(
        self,
        message_type: MessageType | None = None,
        publisher_id: str | None = None,
        writer_group: str | None = None,
        dataset_writer: str | None = None,
    ) -> str:
        """A subscription filter; ``None`` means any value at that level.

        Gaps become ``+`` and an open end becomes ``#`` (which in MQTT also matches the parent
        level, so ``data/pub/group/#`` receives both the group topic and its per-writer topics).
        When every level the message type can have is given, the exact topic is returned.
        """
        names = [publisher_id, writer_group, dataset_writer]
        while names and names[-1] is None:
            names.pop()
        levels = [self.prefix, self.encoding, message_type.value if message_type else "+"]
        levels += ["+" if n is None else escape_level(n) for n in names]
        if message_type is not None:
            low, high = _NAME_LEVELS[message_type]
            if len(names) > high:
                raise ValueError(f"{message_type.value} topic takes {_describe(low, high)}")
            if len(names) == high:
                return _finish("/".join(levels))
        return _finish("/".join([*levels, "#"]))

    def parse(self, topic: str) -> TopicInfo:
        """:func:`parse_topic` with this tree's prefix, also checking the encoding level."""
        info = parse_topic(topic, self.prefix)
        if info.encoding != self.encoding:
            raise DecodeError(
                "topic/Encoding", f"expected {self.encoding!r}, got {info.encoding!r}"
            )
        return info


def parse_topic(topic: str, prefix: str = DEFAULT_PREFIX) -> TopicInfo:
    """Decode a topic of the standard tree below ``prefix``; raise :class:`DecodeError` otherwise.

    The prefix is a parameter because it may span several levels and so cannot be told apart from
    the rest by looking at the topic alone.
    """
    try:
        _check_prefix(prefix)
    except ValueError as exc:
        raise DecodeError("topic/Prefix", str(exc)) from None
    if not topic.startswith(prefix + "/"):
        raise DecodeError("topic/Prefix", f"{topic!r} is not below prefix {prefix!r}")
    levels = topic[len(prefix) + 1 :].split("/")
    if len(levels) < 3:
        raise DecodeError(
            "topic", f"{topic!r} lacks <Encoding>/<MessageType>/<PublisherId> after the prefix"
        )
    encoding, kind, *escaped = levels
    if encoding not in ENCODINGS:
        raise DecodeError("topic/Encoding", f"unknown encoding {encoding!r} in {topic!r}")
    try:
        message_type = MessageType(kind)
    except ValueError:
        raise DecodeError("topic/MessageType", f"unknown message type {kind!r}") from None
    low, high = _NAME_LEVELS[message_type]
    if not low <= len(escaped) <= high:
        raise DecodeError(
            "topic",
            f"{kind} topic takes {_describe(low, high)} after the message type, "
            f"got {len(escaped)} in {topic!r}",
        )
    publisher_id = unescape_level(escaped[0], "topic/PublisherId")
    writer_group = unescape_level(escaped[1], "topic/WriterGroup") if len(escaped) > 1 else None
    writer = unescape_level(escaped[2], "topic/DataSetWriter") if len(escaped) > 2 else None
    return TopicInfo(prefix, encoding, message_type, publisher_id, writer_group, writer)


# --- helpers -----------------------------------------------------------------------------------


def _names(publisher_id: str, writer_group: str | None, dataset_writer: str | None) -> list[str]:
    if dataset_writer is not None and writer_group is None:
        raise ValueError("a DataSetWriter level needs a WriterGroup level")
    names = [publisher_id]
    if writer_group is not None:
        names.append(writer_group)
        if dataset_writer is not None:
            names.append(dataset_writer)
    return names


def _describe(low: int, high: int) -> str:
    shown = "/".join(f"<{n}>" for n in _LEVEL_NAMES[:high])
    if low == high:
        return f"{high} name level(s) ({shown})"
    return f"{low} to {high} name levels ({shown}, the last optional)"


def _finish(topic: str) -> str:
    size = len(topic.encode("utf-8"))
    if size > MAX_TOPIC_BYTES:
        raise ValueError(f"topic is {size} bytes, MQTT allows {MAX_TOPIC_BYTES}")
    return topic


# Write-back topics: an opcua-mqtt extension beside the Part 14 tree (docs/write-back.md).


def command_topic(topics: TopicTree, publisher_id: str) -> str:
    """``<prefix>/json/cmd/<PublisherId>/write``: beside the Part 14 tree, never inside a
    standard message type, so standard subscribers never see commands."""
    return f"{topics.prefix}/{topics.encoding}/cmd/{escape_level(publisher_id)}/write"


def reply_prefix(topics: TopicTree) -> str:
    """``<prefix>/json/reply``: the default place for answers, outside the Part 14 tree."""
    return f"{topics.prefix}/{topics.encoding}/reply"


def reply_topic(topics: TopicTree, publisher_id: str, client_id: str) -> str:
    """``<prefix>/json/reply/<PublisherId>/<client_id>``: where ``opcua-mqtt write`` waits;
    the levels below the prefix are an unsigned requester's claimed identity."""
    return f"{reply_prefix(topics)}/{escape_level(publisher_id)}/{escape_level(client_id)}"
