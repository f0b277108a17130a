"""The MQTT topic tree of OPC 10000-14 1.05 §7.3.4.7 (§7.3.5.7 in 1.05.02) and its name escaping."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from opcua_mqtt.core.errors import DecodeError
from opcua_mqtt.core.topics import (
    EMPTY_NAME_LEVEL,
    MessageType,
    TopicInfo,
    TopicTree,
    escape_level,
    is_retained,
    parse_topic,
    unescape_level,
)

TREE = TopicTree()

# --- exact topics: the table in SPEC-NOTES.md, from Part 14 §7.3.4.7.3-§7.3.4.7.8 -------------


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        (TREE.data("Pub1", "Group1"), "opcua/json/data/Pub1/Group1"),
        (TREE.data("Pub1", "Group1", "Writer1"), "opcua/json/data/Pub1/Group1/Writer1"),
        (TREE.metadata("Pub1", "Group1", "Writer1"), "opcua/json/metadata/Pub1/Group1/Writer1"),
        (TREE.status("Pub1"), "opcua/json/status/Pub1"),
        (TREE.connection("Pub1"), "opcua/json/connection/Pub1"),
        (TREE.application("Pub1"), "opcua/json/application/Pub1"),
        (TREE.endpoints("Pub1"), "opcua/json/endpoints/Pub1"),
        # §7.3.4.7.9-12 (1.05.04): Action topics.
        (TREE.topic(MessageType.ACTION_REQUEST, "R", "G"), "opcua/json/action-request/R/G"),
        (TREE.topic(MessageType.ACTION_RESPONSE, "R", "G"), "opcua/json/action-response/R/G"),
        (TREE.topic(MessageType.ACTION_RESPONDER, "R"), "opcua/json/action-responder/R"),
        (
            TREE.topic(MessageType.ACTION_METADATA, "R", "G", "W"),
            "opcua/json/action-metadata/R/G/W",
        ),
        # A numeric PublisherId is written as a decimal string (§7.2.5.3).
        (TREE.status("4711"), "opcua/json/status/4711"),
    ],
)
def test_exact_topics(topic: str, expected: str) -> None:
    assert topic == expected


def test_multi_level_prefix_and_uadp_encoding() -> None:
    tree = TopicTree("plant1/opcua", "uadp")
    topic = tree.data("Pub1", "Group1", "Writer1")
    assert topic == "plant1/opcua/uadp/data/Pub1/Group1/Writer1"
    assert tree.parse(topic) == TopicInfo(
        "plant1/opcua", "uadp", MessageType.DATA, "Pub1", "Group1", "Writer1"
    )


@pytest.mark.parametrize(
    ("message_type", "retained"),
    [
        # Part 14 Table 204, RETAIN column.
        (MessageType.DATA, False),
        (MessageType.METADATA, True),
        (MessageType.APPLICATION, True),
        (MessageType.ENDPOINTS, True),
        (MessageType.STATUS, True),
        (MessageType.CONNECTION, True),
        (MessageType.ACTION_REQUEST, False),
        (MessageType.ACTION_RESPONSE, False),
        (MessageType.ACTION_METADATA, True),
        (MessageType.ACTION_RESPONDER, True),
    ],
)
def test_retain_flags(message_type: MessageType, retained: bool) -> None:
    assert is_retained(message_type) is retained
    assert TopicInfo("opcua", "json", message_type, "p").retain is retained


# --- escaping ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "level"),
    [
        ("Boiler 1", "Boiler 1"),
        ("Kühlung-Süd", "Kühlung-Süd"),
        ("$SYS", "$SYS"),
        ("a/b", "a%2Fb"),
        ("+", "%2B"),
        ("#", "%23"),
        ("50%", "50%25"),
        ("\x00", "%00"),
        ("tab\there", "tab%09here"),
        ("\x7f\x85", "%7F%C2%85"),
        ("\ufffe", "%EF%BF%BE"),
        ("\ud800", "%ED%A0%80"),  # a lone surrogate: not UTF-8 without escaping
        ("", EMPTY_NAME_LEVEL),
    ],
)
def test_escape_examples(name: str, level: str) -> None:
    assert escape_level(name) == level
    assert unescape_level(level) == name


def test_escaped_names_keep_their_level() -> None:
    topic = TREE.metadata("a/b", "+", "#")
    assert topic == "opcua/json/metadata/a%2Fb/%2B/%23"
    assert topic.count("/") == 5


def test_empty_name_is_not_an_empty_level() -> None:
    topic = TREE.data("", "", "")
    assert topic == "opcua/json/data/%/%/%"
    assert parse_topic(topic) == TopicInfo("opcua", "json", MessageType.DATA, "", "", "")


def test_lower_case_hex_is_accepted() -> None:
    assert unescape_level("a%2fb") == "a/b"


# Text with the interesting characters well represented, plus anything Unicode has, including
# lone surrogates (which hypothesis leaves out unless asked).
ANY_CHAR = st.characters(codec=None, exclude_categories=())
NAMES = st.text(st.sampled_from("%/+#\x00\x1f\x7f\x9f\ufdd0\ufffe\U0001ffff\ud800a ü$") | ANY_CHAR)
MUST_NOT_APPEAR = {"/", "+", "#", "\x00"}


@given(NAMES)
@example("")
@example("%")
@example("%25")
def test_escape_round_trip(name: str) -> None:
    level = escape_level(name)
    assert level
    assert not MUST_NOT_APPEAR & set(level)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in level)
    level.encode("utf-8")  # a valid MQTT UTF-8 string: no lone surrogates left
    assert unescape_level(level) == name


@given(NAMES, NAMES)
def test_escape_is_injective(a: str, b: str) -> None:
    assert (escape_level(a) == escape_level(b)) == (a == b)


SHAPES = [
    (MessageType.DATA, 2),
    (MessageType.DATA, 3),
    (MessageType.METADATA, 3),
    (MessageType.STATUS, 1),
    (MessageType.CONNECTION, 1),
    (MessageType.APPLICATION, 1),
    (MessageType.ENDPOINTS, 1),
    (MessageType.ACTION_REQUEST, 2),
    (MessageType.ACTION_METADATA, 3),
]


@given(
    st.sampled_from(SHAPES),
    st.sampled_from(["opcua", "plant1/opcua", "a/b/c"]),
    st.sampled_from(["json", "uadp"]),
    NAMES,
    NAMES,
    NAMES,
)
def test_parse_inverts_build(
    shape: tuple[MessageType, int], prefix: str, encoding: str, pub: str, group: str, writer: str
) -> None:
    message_type, levels = shape
    group_or_none = group if levels >= 2 else None
    writer_or_none = writer if levels >= 3 else None
    tree = TopicTree(prefix, encoding)
    topic = tree.topic(message_type, pub, group_or_none, writer_or_none)
    assert topic.count("/") == prefix.count("/") + 2 + levels
    expected = TopicInfo(prefix, encoding, message_type, pub, group_or_none, writer_or_none)
    assert parse_topic(topic, prefix) == expected
    assert tree.parse(topic) == expected


# --- invalid topics ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "path", "reason"),
    [
        ("other/json/status/p", "topic/Prefix", "not below prefix"),
        ("opcuax/json/status/p", "topic/Prefix", "not below prefix"),
        ("opcua", "topic/Prefix", "not below prefix"),
        ("opcua/json/status", "topic", "lacks"),
        ("opcua/xml/status/p", "topic/Encoding", "unknown encoding 'xml'"),
        ("opcua/json/bogus/p", "topic/MessageType", "unknown message type 'bogus'"),
        ("opcua/json/status/p/extra", "topic", "1 name level"),
        ("opcua/json/data/p", "topic", "2 to 3 name levels"),
        ("opcua/json/data/p/g/w/x", "topic", "2 to 3 name levels"),
        ("opcua/json/metadata/p/g", "topic", "3 name level"),
        ("opcua/json/status/", "topic/PublisherId", "empty topic level"),
        ("opcua/json/data/p//w", "topic/WriterGroup", "empty topic level"),
        ("opcua/json/data/p/g/50%", "topic/DataSetWriter", "'%' not followed by two hex digits"),
        ("opcua/json/data/p/%zz", "topic/WriterGroup", "'%' not followed by two hex digits"),
        ("opcua/json/status/%FF", "topic/PublisherId", "not UTF-8"),
        ("opcua/json/status/+", "topic/PublisherId", "wildcard"),
        ("opcua/json/data/p/#", "topic/WriterGroup", "wildcard"),
    ],
)
def test_invalid_topics(topic: str, path: str, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        parse_topic(topic)
    assert info.value.path == path
    assert reason in info.value.reason


def test_invalid_prefix_in_parse_is_a_decode_error() -> None:
    with pytest.raises(DecodeError) as info:
        parse_topic("a/+/json/status/p", "a/+")
    assert info.value.path == "topic/Prefix"


def test_tree_parse_checks_encoding() -> None:
    with pytest.raises(DecodeError) as info:
        TREE.parse("opcua/uadp/status/p")
    assert info.value.path == "topic/Encoding"


# --- invalid builds ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prefix", ["", "/opcua", "opcua/", "a//b", "a/+/b", "#", "$SYS/opcua", "a\x00b", "a\x85"]
)
def test_bad_prefix(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        TopicTree(prefix)


def test_bad_encoding() -> None:
    with pytest.raises(ValueError, match="encoding"):
        TopicTree(encoding="xml")


@pytest.mark.parametrize(
    ("message_type", "names"),
    [
        (MessageType.DATA, ("p",)),
        (MessageType.METADATA, ("p", "g")),
        (MessageType.STATUS, ("p", "g")),
        (MessageType.ACTION_REQUEST, ("p", "g", "w")),
    ],
)
def test_wrong_number_of_levels(message_type: MessageType, names: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="name level"):
        TREE.topic(message_type, *names)


def test_writer_without_group() -> None:
    with pytest.raises(ValueError, match="needs a WriterGroup"):
        TREE.topic(MessageType.DATA, "p", None, "w")


def test_topic_size_limit() -> None:
    # MQTT 5 §1.5.3: at most 65,535 bytes; '/' escapes to 3 bytes each.
    with pytest.raises(ValueError, match="65535"):
        TREE.status("/" * 22_000)


# --- subscription filters ---------------------------------------------------------------------


D, M, S = MessageType.DATA, MessageType.METADATA, MessageType.STATUS


@pytest.mark.parametrize(
    ("message_type", "pub", "group", "writer", "expected"),
    [
        (None, None, None, None, "opcua/json/+/#"),
        (D, None, None, None, "opcua/json/data/#"),
        (None, "Pub1", None, None, "opcua/json/+/Pub1/#"),
        (D, "Pub1", None, None, "opcua/json/data/Pub1/#"),
        (D, None, "Group1", None, "opcua/json/data/+/Group1/#"),
        (D, "Pub1", "Group1", "W", "opcua/json/data/Pub1/Group1/W"),
        (M, None, None, "W", "opcua/json/metadata/+/+/W"),
        (S, None, None, None, "opcua/json/status/#"),
        (S, "Pub1", None, None, "opcua/json/status/Pub1"),
        (S, "a/b", None, None, "opcua/json/status/a%2Fb"),
    ],
)
def test_filters(
    message_type: MessageType | None,
    pub: str | None,
    group: str | None,
    writer: str | None,
    expected: str,
) -> None:
    assert TREE.filter(message_type, pub, group, writer) == expected


def test_filter_with_too_many_levels() -> None:
    with pytest.raises(ValueError, match="name level"):
        TREE.filter(MessageType.STATUS, "p", "g")
