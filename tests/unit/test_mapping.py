"""``map``: rules, grouping, names, and ids that stay put when the address space grows."""

from __future__ import annotations

import random
import uuid
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from opcua_mqtt.core.address_space import BrowsedNode, BrowseResult, NodeClass
from opcua_mqtt.core.config.check import check_config, check_config_data, load_config
from opcua_mqtt.core.config.model import FIELD_ID_NAMESPACE, Config, PublishingDefaults
from opcua_mqtt.core.config.text import dump_json, dump_yaml
from opcua_mqtt.core.mapping import (
    WRITER_ID_SLOTS,
    GroupBy,
    MappingRules,
    MapSettings,
    assign_writer_ids,
    map_browse_result,
    plan_mapping,
    sanitize_name,
    writer_id_slot,
)
from opcua_mqtt.core.schema_validation import validator

NS = "urn:plant"
OTHER = "urn:vendor;x"  # a URI with a character the NodeId grammar escapes
OTHER_IN_NODE_IDS = "urn:vendor%3Bx"
ENDPOINT = "opc.tcp://plc1:4840"
SERVER_URI = "urn:plant:plc1"


class Space:
    """Builds a browse result the way ``browse`` reports one."""

    def __init__(self, start: str = "i=85") -> None:
        self.start = start
        self.nodes: list[BrowsedNode] = []
        self.by_path: dict[tuple[str, ...], BrowsedNode] = {}

    def _add(self, path: str, node_class: NodeClass, ns: str = NS, **kw: Any) -> BrowsedNode:
        parts = tuple(path.split("/"))
        parent = self.by_path.get(parts[:-1])
        uri = ns.replace("%", "%25").replace(";", "%3B")
        ident = kw.pop("node_id", None) or f"nsu={uri};s={'.'.join(parts)}"
        node = BrowsedNode(
            node_id=ident,
            node_class=node_class,
            browse_name=parts[-1],
            display_name=parts[-1],
            browse_path=parts,
            parent_node_id=parent.node_id if parent is not None else self.start,
            **kw,
        )
        self.nodes.append(node)
        self.by_path.setdefault(parts, node)
        return node

    def obj(self, path: str, **kw: Any) -> BrowsedNode:
        return self._add(path, NodeClass.OBJECT, **kw)

    def method(self, path: str) -> BrowsedNode:
        return self._add(path, NodeClass.METHOD)

    def var(
        self,
        path: str,
        builtin: int = 11,
        type_name: str = "Double",
        writable: bool = False,
        **kw: Any,
    ) -> BrowsedNode:
        kw.setdefault("data_type", f"i={builtin}")
        kw.setdefault("value_rank", -1)
        kw.setdefault("readable", True)
        return self._add(
            path,
            NodeClass.VARIABLE,
            builtin_type=builtin,
            data_type_name=type_name,
            writable=writable,
            **kw,
        )

    def result(self, server_uri: str | None = SERVER_URI) -> BrowseResult:
        return BrowseResult(
            endpoint=ENDPOINT,
            server_uri=server_uri,
            namespaces=["http://opcfoundation.org/UA/", "urn:plant:plc1", NS, OTHER],
            start_node=self.start,
            nodes=list(self.nodes),
        )


def plant() -> Space:
    s = Space()
    s.obj("Server", node_id="i=2253")
    s.var("Server/ServiceLevel", builtin=3, type_name="Byte", node_id="i=2267")
    s.obj("Line1")
    s.obj("Line1/Filler")
    s.var("Line1/Filler/Temperature")
    s.var("Line1/Filler/Temperature/EURange", builtin=22, type_name="Range")
    s.var("Line1/Filler/Setpoint", writable=True)
    s.var("Line1/Filler/State", builtin=12, type_name="String")
    s.obj("Line1/Filler/Motor")
    s.var("Line1/Filler/Motor/Speed", builtin=10, type_name="Float")
    s.obj("Line1/Capper")
    s.obj("Line1/Capper/Motor")
    s.var("Line1/Capper/Motor/Speed", builtin=10, type_name="Float")
    s.method("Line1/Capper/Reset")
    s.var("Line1/Capper/Reset/InputArguments", builtin=22, type_name="Argument")
    s.obj("Utilities")
    s.var("Utilities/Pressure", writable=True)
    s.var("Utilities/Counts", builtin=7, type_name="UInt32", value_rank=1, array_dimensions=(4,))
    return s


def layout(config: Config) -> dict[str, dict[str, list[str]]]:
    return {
        g.name: {w.name: [f.name for f in w.fields] for w in g.writers}
        for g in config.writer_groups
    }


def ids(config: Config) -> dict[str, tuple[uuid.UUID, int]]:
    """node id -> (DataSetFieldId, DataSetWriterId of its writer)."""
    return {f.node_id: (f.dataset_field_id, w.dataset_writer_id) for _, w, f in config.fields()}


# ------------------------------------------------------------------------------- the default map


def test_default_map_of_a_plant() -> None:
    config = map_browse_result(plant().result())
    assert layout(config) == {
        "Line1": {
            "Capper.Motor": ["Speed"],
            "Filler": ["Setpoint", "State", "Temperature", "Temperature.EURange"],
            "Filler.Motor": ["Speed"],
        },
        "Utilities": {"Utilities": ["Counts", "Pressure"]},
    }
    assert config.opcua.endpoint == ENDPOINT and config.opcua.server_uri == SERVER_URI
    assert config.publisher_id == "opcua-mqtt-plc1"
    assert config.defaults == PublishingDefaults()
    counts = next(f for _, _, f in config.fields() if f.name == "Counts")
    assert (counts.builtin_type, counts.value_rank, counts.array_dimensions) == ("UInt32", 1, (4,))
    assert counts.data_type == "i=7"


def test_output_validates_against_the_schema_without_issues() -> None:
    config = map_browse_result(plant().result())
    doc = config.to_json()
    validator("config").validate(doc)
    # map signs metadata when it finds a PKI (the CLI's part); nothing else is amiss
    unsigned = ["metadata_signing"]
    assert [i.path for i in check_config_data(doc).issues] == unsigned
    assert [i.path for i in check_config(dump_yaml(config), "map.yaml").issues] == unsigned


def test_write_back_lists_writable_variables_but_stays_off() -> None:
    config = map_browse_result(plant().result())
    assert config.write_back.enabled is False
    assert config.write_back.allow == ()
    assert [(n.field, n.node_id, n.builtin_type) for n in config.write_back.writable_nodes] == [
        ("Line1/Filler/Setpoint", f"nsu={NS};s=Line1.Filler.Setpoint", "Double"),
        ("Utilities/Utilities/Pressure", f"nsu={NS};s=Utilities.Pressure", "Double"),
    ]


def test_node_ids_are_written_with_namespace_uris() -> None:
    s = Space()
    s.obj("A", node_id="ns=2;s=A")
    s.var("A/x", node_id="ns=2;i=17")
    s.var("A/y", node_id="ns=3;s=Y")
    config = map_browse_result(s.result())
    assert sorted(f.node_id for _, _, f in config.fields()) == [
        f"nsu={NS};i=17",
        "nsu=urn:vendor%3Bx;s=Y",
    ]


def test_settings_fill_the_defaults_section() -> None:
    defaults = replace(
        PublishingDefaults(),
        publishing_interval_ms=250,
        sampling_interval_ms=100,
        key_frame_count=1,
        keep_alive_ms=5000,
        encoding="verbose",
        queue_size=2,
    )
    config = map_browse_result(
        plant().result(), settings=MapSettings(publisher_id="line1", defaults=defaults)
    )
    assert config.defaults == defaults and config.publisher_id == "line1"
    assert config.writer_groups[0].publishing_interval_ms == 250
    assert config.writer_groups[0].writers[0].encoding == "verbose"


def test_inconsistent_ranks_from_a_server_do_not_make_an_invalid_file() -> None:
    s = Space()
    s.obj("A")
    s.var("A/x", value_rank=-1, array_dimensions=(3,))
    s.var("A/y", value_rank=2, array_dimensions=(3,))
    s.var("A/z", value_rank=-7)
    s.var("A/w", builtin=0, type_name="BaseDataType", value_rank=None)
    config = map_browse_result(s.result())
    fields = {f.name: f for _, _, f in config.fields()}
    assert (fields["x"].value_rank, fields["x"].array_dimensions) == (-1, ())
    assert (fields["y"].value_rank, fields["y"].array_dimensions) == (2, ())
    assert fields["z"].value_rank == -1 and fields["w"].builtin_type is None


# ---------------------------------------------------------------------------------------- rules


def mapped(rules: MappingRules, space: Space | None = None) -> list[str]:
    config = map_browse_result((space or plant()).result(), rules)
    return sorted(f"{g.name}/{w.name}/{f.name}" for g, w, f in config.fields())


def test_include_globs_take_whole_subtrees_and_stay_within_levels() -> None:
    assert mapped(MappingRules(include=("Line1/Filler",))) == [
        "Line1/Filler/Setpoint",
        "Line1/Filler/State",
        "Line1/Filler/Temperature",
        "Line1/Filler/Temperature.EURange",
        "Line1/Motor/Speed",  # no other Motor selected: no need for Filler.Motor
    ]
    assert mapped(MappingRules(include=("Line1/*/Motor/Speed",))) == [
        "Line1/Capper.Motor/Speed",
        "Line1/Filler.Motor/Speed",
    ]
    assert mapped(MappingRules(include=("**/Speed",))) == [
        "Line1/Capper.Motor/Speed",
        "Line1/Filler.Motor/Speed",
    ]
    assert mapped(MappingRules(include=("Line1/*/Speed",))) == []  # * stays within one level


def test_exclude_wins_over_include() -> None:
    rules = MappingRules(include=("Line1/**",), exclude=("**/Motor", "Line1/Filler/Temperature"))
    assert mapped(rules) == ["Line1/Filler/Setpoint", "Line1/Filler/State"]


def test_node_id_patterns_glob_both_forms_or_regex() -> None:
    assert mapped(MappingRules(node_ids=(f"nsu={NS};s=Utilities.*",))) == [
        "Utilities/Utilities/Counts",
        "Utilities/Utilities/Pressure",
    ]
    assert mapped(MappingRules(node_ids=("ns=2;s=*.Pressure",))) == ["Utilities/Utilities/Pressure"]
    assert mapped(MappingRules(node_ids=(r"re:Motor\.Speed$",))) == [
        "Line1/Capper.Motor/Speed",
        "Line1/Filler.Motor/Speed",
    ]


def test_bad_patterns_are_rejected_up_front() -> None:
    with pytest.raises(ValueError, match="regular expression"):
        MappingRules(node_ids=("re:(",))
    with pytest.raises(ValueError, match="bad glob"):
        MappingRules(include=("[z-a]",))


def test_parent_class_leaves_out_method_arguments_by_default() -> None:
    assert "Line1/Reset/InputArguments" not in mapped(MappingRules())
    everything = MappingRules(parent_classes=tuple(NodeClass))
    assert "Line1/Reset/InputArguments" in mapped(everything)  # the Method is its writer
    properties = MappingRules(parent_classes=(NodeClass.VARIABLE,))
    assert mapped(properties) == ["Line1/Filler/Temperature.EURange"]


def test_data_types_by_name_or_builtin_type_case_insensitively() -> None:
    assert mapped(MappingRules(data_types=("float",))) == [
        "Line1/Capper.Motor/Speed",
        "Line1/Filler.Motor/Speed",
    ]
    assert mapped(MappingRules(data_types=("Range", "ExtensionObject"))) == [
        "Line1/Filler/Temperature.EURange"
    ]
    assert mapped(MappingRules(data_types=("i=7",))) == ["Utilities/Utilities/Counts"]


def test_writable_only() -> None:
    assert mapped(MappingRules(writable_only=True)) == [
        "Line1/Filler/Setpoint",
        "Utilities/Utilities/Pressure",
    ]


def test_standard_nodes_only_when_asked() -> None:
    assert not [p for p in mapped(MappingRules()) if p.startswith("Server")]
    assert "Server/Server/ServiceLevel" in mapped(MappingRules(standard_nodes=True))


def _with_session_diagnostics(s: Space, session: str) -> Space:
    """What node-opcua and open62541 add below the Server object for the browsing session, in
    namespace 1, gone when the session closes."""
    s.obj("Server/ServerDiagnostics", node_id="i=2274")
    s.obj("Server/ServerDiagnostics/SessionsDiagnosticsSummary", node_id="i=3706")
    summary = "Server/ServerDiagnostics/SessionsDiagnosticsSummary"
    s.obj(f"{summary}/{session}", node_id=f"nsu={NS};g={session}")
    s.var(f"{summary}/{session}/SessionName", builtin=12, node_id=f"nsu={NS};i=9{len(s.nodes)}")
    s.var(
        f"{summary}/{session}/Secret",
        readable=False,
        node_id=f"nsu={NS};i=8{len(s.nodes)}",
    )
    return s


def test_the_server_objects_subtree_stays_out_in_every_namespace_unless_asked() -> None:
    first = plan_mapping(_with_session_diagnostics(plant(), str(uuid.uuid4())).result())
    second = plan_mapping(_with_session_diagnostics(plant(), str(uuid.uuid4())).result())
    assert first.document == second.document  # another session, the same map
    assert first.skipped == []  # an unreadable node the rules leave out is not reported
    assert "Server" not in [g["name"] for g in first.document["writer_groups"]]
    asked = plan_mapping(
        _with_session_diagnostics(plant(), str(uuid.UUID(int=1))).result(),
        MappingRules(include=("Server/**",)),
    )
    assert [g["name"] for g in asked.document["writer_groups"]] == ["Server"]
    assert asked.skipped == [(f"nsu={NS};i=822", "this user may not read it")]
    standard = mapped(MappingRules(standard_nodes=True))
    assert "Server/Server/ServiceLevel" in standard


def test_only_variables_the_rules_keep_are_reported_as_skipped() -> None:
    s = plant()
    s.var("Line1/Filler/Secret", readable=False)
    s.var("Utilities/Broken", node_id="nsu=urn:plant;q=1")
    rules = MappingRules(include=("Utilities/**",))
    assert plan_mapping(s.result(), rules).skipped == [("nsu=urn:plant;q=1", "not a valid NodeId")]
    rules = MappingRules(exclude=("Utilities",), data_types=("Double",))
    assert plan_mapping(s.result(), rules).skipped == [
        (f"nsu={NS};s=Line1.Filler.Secret", "this user may not read it")
    ]


def test_unreadable_and_malformed_variables_are_reported_not_mapped() -> None:
    s = plant()
    s.var("Line1/Filler/Secret", readable=False)
    s.var("Line1/Filler/Broken", node_id="nsu=urn:plant;q=1")
    s.nodes.append(replace(s.nodes[-1], node_id="x", error="BadNodeIdUnknown"))
    plan = plan_mapping(s.result())
    assert sorted(plan.skipped) == [
        ("nsu=urn:plant;q=1", "not a valid NodeId"),
        (f"nsu={NS};s=Line1.Filler.Secret", "this user may not read it"),
    ]
    assert plan.mapped == 8 and plan.variables == 12


# ----------------------------------------------------------------------------------- grouping


def test_group_by_parent_and_none() -> None:
    by_parent = map_browse_result(plant().result(), MappingRules(group_by=GroupBy.PARENT))
    assert layout(by_parent) == {
        "Capper.Motor": {"Motor": ["Speed"]},
        "Filler": {"Filler": ["Setpoint", "State", "Temperature", "Temperature.EURange"]},
        "Filler.Motor": {"Motor": ["Speed"]},
        "Utilities": {"Utilities": ["Counts", "Pressure"]},
    }
    one = map_browse_result(plant().result(), MappingRules(group_by=GroupBy.NONE))
    assert list(layout(one)) == ["Objects"]
    assert sorted(layout(one)["Objects"]) == ["Capper.Motor", "Filler", "Filler.Motor", "Utilities"]
    # the writer ids do not depend on the grouping
    assert ids(by_parent) == ids(one) == ids(map_browse_result(plant().result()))


def test_variables_directly_under_the_start_node() -> None:
    s = Space(start=f"nsu={NS};s=Line1")
    s.var("Speed")
    s.obj("Filler")
    s.var("Filler/Temp")
    config = map_browse_result(s.result())
    assert layout(config) == {"Filler": {"Filler": ["Temp"]}, "Line1": {"Line1": ["Speed"]}}


# -------------------------------------------------------------------------------------- names


def test_names_are_sanitized() -> None:
    assert sanitize_name("Temp (°C)/max #1") == "Temp_C_max_1"
    assert sanitize_name("a+b") == "a_b" and sanitize_name("///") == "_"
    s = Space()
    s.obj("Line 1")
    s.var('Line 1/"Quoted" name')
    config = map_browse_result(s.result())
    assert layout(config) == {"Line_1": {"Line_1": ["Quoted_name"]}}


def test_colliding_names_are_lengthened_by_their_browse_path() -> None:
    s = Space()
    s.obj("Line1")
    s.obj("Line1/A")
    s.var("Line1/A/Level")
    s.var("Line1/A/Level/Level")  # a property with its variable's name
    s.var("Line1/A/X", ns=OTHER)
    s.var("Line1/A/X")  # same browse path, other namespace: only a hash tells them apart
    config = map_browse_result(s.result())
    names = layout(config)["Line1"]["A"]
    assert names[:2] == ["Level", "Level.Level"]
    assert len(names) == 4 and all(n.startswith("Line1.A.X_") for n in names[2:])


def test_names_and_ids_do_not_depend_on_the_order_browse_reported() -> None:
    result = plant().result()
    expected = dump_yaml(map_browse_result(result))
    for seed in range(5):
        nodes = list(result.nodes)
        random.Random(seed).shuffle(nodes)
        shuffled = BrowseResult(
            result.endpoint, result.server_uri, result.namespaces, result.start_node, nodes
        )
        assert dump_yaml(map_browse_result(shuffled)) == expected


# ---------------------------------------------------------------------------------------- ids


def test_ids_are_derived_from_the_server_and_the_node() -> None:
    config = map_browse_result(plant().result())
    for _, _, f in config.fields():
        assert f.dataset_field_id == uuid.uuid5(FIELD_ID_NAMESPACE, f"{SERVER_URI}\n{f.node_id}")
    writer_ids = [w.dataset_writer_id for _, w in config.writers()]
    assert len(set(writer_ids)) == len(writer_ids)
    assert all(1 <= i <= WRITER_ID_SLOTS for i in writer_ids)
    filler = next(w for _, w in config.writers() if w.name == "Filler")
    assert filler.dataset_writer_id == writer_id_slot(f"{SERVER_URI}\nnsu={NS};s=Line1.Filler")


def test_without_a_server_uri_ids_derive_from_the_endpoint() -> None:
    config = map_browse_result(plant().result(server_uri=None))
    f = next(f for _, _, f in config.fields())
    assert f.dataset_field_id == uuid.uuid5(FIELD_ID_NAMESPACE, f"{ENDPOINT}\n{f.node_id}")
    assert config.opcua.server_uri is None


def test_map_twice_is_byte_identical() -> None:
    first, second = map_browse_result(plant().result()), map_browse_result(plant().result())
    assert dump_yaml(first) == dump_yaml(second)
    assert dump_json(first) == dump_json(second)
    assert load_config(dump_yaml(first), "m.yaml") == first


def _collision() -> tuple[str, str]:
    seen: dict[int, str] = {}
    for n in range(100_000):
        key = f"k{n}"
        slot = writer_id_slot(key)
        if slot in seen:
            return seen[slot], key
        seen[slot] = key
    raise AssertionError("no collision found")


def test_writer_id_collisions_are_settled_by_sorted_keys_in_any_order() -> None:
    a, b = sorted(_collision())
    others = [f"other{n}" for n in range(50)]
    assigned = assign_writer_ids([b, *others, a])
    assert assigned == assign_writer_ids([a, *reversed(others), b])
    assert assigned[a] == writer_id_slot(a)  # the smaller key keeps its slot
    assert assigned[b] != writer_id_slot(b)
    assert len(set(assigned.values())) == len(assigned)
    # keys without a collision never move, whatever else is added
    alone = assign_writer_ids(others)
    assert {k: assigned[k] for k in others} == alone


def test_more_writers_than_ids_is_an_error() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        assign_writer_ids(str(n) for n in range(WRITER_ID_SLOTS + 1))


# ---------------------------------------------------- property: adding a variable moves nothing

NAMES = st.sampled_from(["A", "B", "Level", "Temp", "Motor", "x y", "Speed"])


@st.composite
def address_spaces(draw: st.DrawFn) -> tuple[BrowseResult, BrowsedNode]:
    """A random tree of objects and variables (names collide on purpose), and one more
    variable to add under an existing node."""
    s = Space()
    containers: list[tuple[str, ...]] = [()]
    count = draw(st.integers(1, 25))
    for counter in range(1, count + 1):
        parent = draw(st.sampled_from(containers))
        name = draw(NAMES)
        path = (*parent, name)
        ns = draw(st.sampled_from([NS, OTHER_IN_NODE_IDS]))
        node_id = f"nsu={ns};i={counter}"
        if draw(st.booleans()):
            s.obj("/".join(path), node_id=node_id)
        else:
            s.var("/".join(path), node_id=node_id, writable=draw(st.booleans()))
        if path not in containers:
            containers.append(path)
        # keep the parent links right when two siblings share a name
        s.by_path[path] = s.nodes[-1]
    parent = draw(st.sampled_from(containers))
    s.var("/".join((*parent, draw(NAMES))), node_id=f"nsu={NS};i=99999")
    new = s.nodes.pop()
    nodes = draw(st.permutations(s.nodes))
    result = BrowseResult(ENDPOINT, SERVER_URI, s.result().namespaces, "i=85", list(nodes))
    return result, new


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(space=address_spaces(), where=st.integers(0, 10_000))
def test_adding_one_variable_adds_one_field_and_moves_no_id(
    space: tuple[BrowseResult, BrowsedNode], where: int
) -> None:
    before_result, new = space
    nodes = list(before_result.nodes)
    nodes.insert(where % (len(nodes) + 1), new)
    after_result = replace_nodes(before_result, nodes)
    before_plan = plan_mapping(before_result)
    after_plan = plan_mapping(after_result)
    assert after_plan.mapped == before_plan.mapped + 1
    if before_plan.mapped == 0:
        return
    before = map_browse_result(before_result)
    after = map_browse_result(after_result)
    old, now = ids(before), ids(after)
    assert set(now) == set(old) | {f"nsu={NS};i=99999"}
    new_objects = set(after_plan.writer_ids) - set(before_plan.writer_ids)
    if new_objects:  # a new writer: ids move only if its hash meets an existing one
        (new_object,) = new_objects
        old_slots = {writer_id_slot(f"{SERVER_URI}\n{k}") for k in before_plan.writer_ids}
        old_slots |= set(before_plan.writer_ids.values())
        assume(writer_id_slot(f"{SERVER_URI}\n{new_object}") not in old_slots)
    assert {k: now[k] for k in old} == old
    # and the result is still deterministic and valid
    assert dump_yaml(map_browse_result(after_result)) == dump_yaml(after)
    assert check_config_data(after.to_json()).ok


def replace_nodes(result: BrowseResult, nodes: list[BrowsedNode]) -> BrowseResult:
    return BrowseResult(result.endpoint, result.server_uri, result.namespaces, "i=85", nodes)
