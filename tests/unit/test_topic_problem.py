"""``topic_problem`` and ``string_problem``: which topic names, filters and other strings a broker
takes (tests/integration/test_mqtt_session.py checks the same rules against a real Mosquitto)."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from opcua_mqtt.core.topics import MAX_TOPIC_BYTES, escape_level, string_problem, topic_problem


@given(st.lists(st.text(), min_size=1, max_size=4))
def test_topics_built_from_escaped_names_are_taken_as_names_and_filters(names: list[str]) -> None:
    topic = "/".join(escape_level(name) for name in names)
    assert topic_problem(topic) is None
    assert topic_problem(topic, wildcards=True) is None


@given(st.characters(exclude_categories=()))
@example("\x1f")
@example(" ")
@example("\x7f")
@example("\x9f")
@example("\xa0")
@example("\ufdcf")
@example("\ufdd0")
@example("\ufdef")
@example("\ufdf0")
@example("\ufffd")
@example("\ufffe")
@example("\U0010ffff")
@example("\ud800")
def test_exactly_the_characters_escape_level_escapes_are_refused(char: str) -> None:
    """Except ``%`` and ``/``, which are escaped only to keep names reversible and in one level."""
    refused = escape_level(char) != char and char not in "%/"
    assert (string_problem(f"a{char}b") is not None) is (refused and char not in "+#")
    assert (topic_problem(f"a{char}b") is not None) is refused
    assert (topic_problem(f"a/{char}b", wildcards=True) is not None) is refused


@pytest.mark.parametrize(
    ("topic_filter", "taken"),
    [
        ("#", True),
        ("+", True),
        ("a/+/#", True),
        ("+/+/+", True),
        ("$share/g/a/#", True),
        ("/", True),
        ("a/#/b", False),
        ("#/a", False),
        ("a#", False),
        ("a/b+", False),
        ("++", False),
        ("", False),
    ],
)
def test_wildcards_fill_a_whole_level_and_hash_comes_last(topic_filter: str, taken: bool) -> None:
    assert (topic_problem(topic_filter, wildcards=True) is None) is taken
    if topic_filter and ("+" in topic_filter or "#" in topic_filter):
        assert topic_problem(topic_filter) == "it contains a wildcard ('+' or '#')"


def test_size_is_counted_in_utf8_bytes() -> None:
    assert topic_problem("a" * MAX_TOPIC_BYTES) is None
    assert topic_problem("é" * (MAX_TOPIC_BYTES // 2)) is None
    assert topic_problem("é" * (MAX_TOPIC_BYTES // 2 + 1)) == (
        f"it is {MAX_TOPIC_BYTES + 1} bytes long, MQTT allows {MAX_TOPIC_BYTES}"
    )


def test_the_problem_names_the_character() -> None:
    assert topic_problem("a/\x01") == "it contains U+0001 (a control, noncharacter or surrogate)"
    assert topic_problem("") == "it is empty"


def test_a_string_that_is_no_topic_name_may_still_be_sent_as_a_property() -> None:
    """Mosquitto passes on a Response Topic that is empty or has wildcards."""
    for text in ("", "reply/#", "a+b"):
        assert string_problem(text) is None
        assert topic_problem(text) is not None
