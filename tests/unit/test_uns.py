"""Topic names for a Unified Namespace: queue name templates (core/uns.py), their checks at load
(core/config/queues.py) and the topics the bridge plan publishes to and announces in ua-connection
(OPC 10000-14 1.05 §6.4.2.3.1 WriterGroup QueueName, §6.4.2.5.1 DataSetWriter QueueName,
§6.4.2.5.5 MetaDataQueueName)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from asyncua import ua
from hypothesis import given
from hypothesis import strategies as st

from opcua_mqtt.bridge.from_config import plan_from_config
from opcua_mqtt.bridge.plan import data_topic, metadata_topic, writer_group
from opcua_mqtt.core.config.check import check_config_data, config_from_dict, load_config
from opcua_mqtt.core.config.text import dump_yaml
from opcua_mqtt.core.topics import TopicTree, topic_matches, topic_problem
from opcua_mqtt.core.uns import TemplateError, expand, queue_problem, template_variables
from tests.unit.test_config import base, messages

UNS = {"enterprise": "acme", "site": "site1"}
DATA = "{enterprise}/{site}/{group}/{writer}"
META = "{enterprise}/{site}/{group}/{writer}/metadata"


def uns_doc(**group: Any) -> dict[str, Any]:
    doc = base()
    doc["uns"] = dict(UNS)
    doc["writer_groups"][0] |= {"queue_name": DATA, "metadata_queue_name": META, **group}
    return doc


# ------------------------------------------------------------------------------- templates


def test_expand_substitutes_every_variable() -> None:
    assert expand("{a}/x/{b}/{a}", {"a": "1", "b": "p/q"}) == "1/x/p/q/1"
    assert template_variables("{a}/x/{b}/{a}") == ["a", "b", "a"]
    assert expand("plain/topic", {}) == "plain/topic"


def test_an_unknown_variable_names_itself_and_the_known_ones() -> None:
    with pytest.raises(TemplateError, match=r"unknown template variable \{sight\}.*\{site\}"):
        expand("{enterprise}/{sight}", UNS)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("a/{Site}", r"\{Site\} is not a variable name"),
        ("a/{}", r"\{\} is not a variable name"),
        ("a/{site", r"'\{' that is not part of"),
        ("a/site}", r"'\}' that is not part of"),
    ],
)
def test_malformed_templates_say_what_is_wrong(template: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        template_variables(template)


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("acme/+/x", "wildcard"),
        ("acme/#", "wildcard"),
        ("$SYS/x", "starts with '$'"),
        ("acme//x", "empty level"),
        ("/acme", "empty level"),
        ("acme/", "empty level"),
        ("acme/\x00", "U+0000"),
        ("opcua/json/data/p/g", "standard topic tree"),
        ("opcua/json", "standard topic tree"),
    ],
)
def test_queue_problem_names_the_reason(topic: str, reason: str) -> None:
    problem = queue_problem(topic, TopicTree())
    assert problem is not None and reason in problem


def test_topics_beside_the_standard_tree_are_fine() -> None:
    tree = TopicTree()
    for topic in ("acme/site1/Line1/Filler", "opcua/jsonx", "opcua/uadp/x", "a$/b"):
        assert queue_problem(topic, tree) is None


_LEVEL = st.text(st.characters(codec="utf-8"), min_size=0, max_size=8)


@given(st.lists(_LEVEL, min_size=1, max_size=5))
def test_an_accepted_queue_name_is_a_publishable_topic_that_only_itself_matches(
    levels: list[str],
) -> None:
    """Whatever queue_problem accepts a broker takes as a topic name, and as a filter it
    matches exactly that topic (no wildcard, no empty level to blur it)."""
    topic = "/".join(levels)
    if queue_problem(topic, TopicTree()) is not None:
        return
    assert topic_problem(topic) is None
    assert topic_problem(topic, wildcards=True) is None
    assert topic_matches(topic, topic)
    assert not topic_matches(topic, topic + "/x")
    assert all(levels) and not topic.startswith("$")


@given(st.text(st.characters(codec="utf-8"), max_size=20))
def test_group_and_writer_names_stay_one_level(name: str) -> None:
    """Names are escaped like the standard tree's levels: a name can never add a level or a
    wildcard to a template's topic."""
    doc = uns_doc(name=name or "x")
    doc["writer_groups"][0]["writers"][0]["name"] = name or "x"
    data = check_config_data(doc).config
    if data is None:
        return  # a name the schema refuses (with '/' or controls)
    topic = data.writer_groups[0].writers[0].queue_name
    assert topic is not None
    assert len(topic.split("/")) == 4 and topic_problem(topic) is None


# ------------------------------------------------------------------------------- the loader


def test_templates_expand_per_writer_and_round_trip() -> None:
    config = config_from_dict(uns_doc())
    group = config.writer_groups[0]
    filler, capper = group.writers
    assert filler.queue_name == "acme/site1/Line1/Filler"
    assert filler.metadata_queue_name == "acme/site1/Line1/Filler/metadata"
    assert capper.queue_name == "acme/site1/Line1/Capper"
    assert group.queue_name is None  # names {writer}: the group has no single topic
    again = load_config(dump_yaml(config), "again.yaml")
    assert again == config
    assert again.to_json()["writer_groups"][0]["queue_name"] == DATA


def test_a_writer_template_overrides_the_groups() -> None:
    doc = uns_doc()
    doc["writer_groups"][0]["writers"][1] |= {
        "queue_name": "{enterprise}/{site}/capping/{writer}",
        "metadata_queue_name": "{enterprise}/meta/{writer}",
    }
    filler, capper = config_from_dict(doc).writer_groups[0].writers
    assert filler.queue_name == "acme/site1/Line1/Filler"
    assert capper.queue_name == "acme/site1/capping/Capper"
    assert capper.metadata_queue_name == "acme/meta/Capper"


def test_writers_may_share_a_group_data_topic() -> None:
    config = config_from_dict(uns_doc(queue_name="{enterprise}/{site}/{group}"))
    group = config.writer_groups[0]
    assert group.queue_name == "acme/site1/Line1"
    assert {w.queue_name for w in group.writers} == {"acme/site1/Line1"}


def test_without_templates_everything_stays_standard() -> None:
    config = config_from_dict(base())
    plan = plan_from_config(config)
    g = plan.groups[0]
    w = g.writers[0]
    assert data_topic(plan, g, w) == "opcua/json/data/plant1/Line1/Filler"
    assert metadata_topic(plan, g, w) == "opcua/json/metadata/plant1/Line1/Filler"
    assert data_topic(plan, g) == "opcua/json/data/plant1/Line1"


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        (
            {"queue_name": "{enterprise}/{area}/{writer}"},
            "writer_groups/0/queue_name",
            "unknown template variable {area} (known here: {enterprise}, {group}, "
            "{publisher_id}, {site}, {writer})",
        ),
        (
            {"queue_name": "{enterprise}/+/{writer}"},
            "writer_groups/0/queue_name",
            "expected an MQTT topic name, got 'acme/+/Filler' for writer 'Filler': it "
            "contains a wildcard ('+' or '#')",
        ),
        (
            {"queue_name": "opcua/json/data/{writer}"},
            "writer_groups/0/queue_name",
            "lies in the standard topic tree",
        ),
        (
            {"metadata_queue_name": "{enterprise}/{site}/{group}/metadata"},
            "writer_groups/0/metadata_queue_name",
            "writer Line1/Capper would publish its metadata on 'acme/site1/Line1/metadata', "
            "which is already the metadata topic of writer Line1/Filler",
        ),
        (
            {"metadata_queue_name": DATA},
            "writer_groups/0/metadata_queue_name",
            "which is already the data topic of writer Line1/Filler: retained metadata needs "
            "a topic of its own",
        ),
        (
            {"bundle_writers": True},
            "writer_groups/0/queue_name",
            "cannot name {writer}",
        ),
    ],
)
def test_bad_templates_are_refused_where_they_are(
    change: dict[str, Any], path: str, message: str
) -> None:
    found = messages(uns_doc(**change))
    assert path in found, found
    assert message in found[path]


def test_a_builtin_variable_cannot_be_redefined() -> None:
    doc = uns_doc()
    doc["uns"]["group"] = "x"
    assert "'group' is a built-in template variable" in messages(doc)["uns/group"]


def test_uns_variable_names_are_checked_by_the_schema() -> None:
    doc = uns_doc()
    doc["uns"]["Site"] = "x"
    assert any(path.startswith("uns") for path in messages(doc)), messages(doc)


def test_writers_of_a_bundled_group_share_its_queue() -> None:
    doc = uns_doc(bundle_writers=True, queue_name="{enterprise}/{site}/{group}")
    config = config_from_dict(copy.deepcopy(doc))
    assert config.writer_groups[0].queue_name == "acme/site1/Line1"
    doc["writer_groups"][0]["writers"][0]["queue_name"] = "acme/own"
    found = messages(doc)
    assert "share the group's queue" in found["writer_groups/0/writers/0/queue_name"]


# ------------------------------------------------------------------------- plan and discovery


def test_the_plan_publishes_on_the_custom_topics_and_announces_them() -> None:
    plan = plan_from_config(config_from_dict(uns_doc()))
    g = plan.groups[0]
    filler = g.writers[0]
    assert data_topic(plan, g, filler) == "acme/site1/Line1/Filler"
    assert metadata_topic(plan, g, filler) == "acme/site1/Line1/Filler/metadata"
    described = writer_group(plan, g)
    assert isinstance(described.TransportSettings, ua.BrokerWriterGroupTransportDataType)
    announced = {
        w.Name: (w.TransportSettings.QueueName, w.TransportSettings.MetaDataQueueName)
        for w in described.DataSetWriters
    }
    assert announced == {
        "Filler": ("acme/site1/Line1/Filler", "acme/site1/Line1/Filler/metadata"),
        "Capper": ("acme/site1/Line1/Capper", "acme/site1/Line1/Capper/metadata"),
    }


def test_a_bundled_group_announces_one_queue_for_all_its_writers() -> None:
    doc = uns_doc(bundle_writers=True, queue_name="{enterprise}/{site}/{group}")
    plan = plan_from_config(config_from_dict(doc))
    g = plan.groups[0]
    described = writer_group(plan, g)
    assert described.TransportSettings.QueueName == "acme/site1/Line1"
    assert {w.TransportSettings.QueueName for w in described.DataSetWriters} == {"acme/site1/Line1"}
    assert data_topic(plan, g, g.writers[1]) == "acme/site1/Line1"
