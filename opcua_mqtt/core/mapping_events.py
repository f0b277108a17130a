"""``map --events``: an event writer proposed for each event notifier browse found.

A notifier is an Object whose EventNotifier attribute has SubscribeToEvents (browse records
it). Each proposal selects the standard event fields and those of alarms (from
AlarmConditionType: a field an event's type lacks is null, Part 4 §7.22.3), so one writer
shows plain events and alarms alike. DataSetWriterIds come from the server's identity and the
notifier's NodeId, past the data writers' ids: mapping again gives the same ids.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Final

from opcua_mqtt.core.address_space import BrowseResult, NodeClass
from opcua_mqtt.core.config.events import DEFAULT_SELECT
from opcua_mqtt.core.mapping import sanitize_name, writer_id_slot

ALARM_TYPE: Final = "i=2915"  # AlarmConditionType
ALARM_SELECT: Final = (
    *DEFAULT_SELECT,
    "ConditionName",
    "ConditionId",
    "Retain",
    "ActiveState/Id",
    "AckedState/Id",
)


def event_writers(
    result: BrowseResult, taken_ids: Collection[int], group_names: Collection[str]
) -> list[dict[str, Any]]:
    """The ``event_writers`` entries for the notifiers of ``result``, with DataSetWriterIds
    outside ``taken_ids`` and a writer group named apart from ``group_names``."""
    identity = result.server_uri or result.endpoint
    group = events_group(group_names)
    taken = set(taken_ids)
    names: set[str] = set()
    out = []
    notifiers = [
        n
        for n in result.nodes
        if n.node_class is NodeClass.OBJECT and n.event_notifier and n.error is None
    ]
    for node in sorted(notifiers, key=lambda n: n.node_id):
        base = sanitize_name(node.browse_name) or "Events"
        name = next(c for c in (base, *(f"{base}_{i}" for i in range(2, 10_000))) if c not in names)
        names.add(name)
        entry = event_writer_entry(identity, node.node_id, name, taken, group)
        taken.add(entry["dataset_writer_id"])
        out.append(entry)
    return out


def events_group(group_names: Collection[str]) -> str:
    """``Events``, or the first ``Events_<n>`` no data writer group is called."""
    return next(
        g for g in ("Events", *(f"Events_{i}" for i in range(1, 1000))) if g not in group_names
    )


def event_writer_entry(
    identity: str, notifier: str, name: str, taken_ids: Collection[int], group: str
) -> dict[str, Any]:
    """One proposed event writer of ``notifier``, its DataSetWriterId derived from the
    server's ``identity`` and the notifier, outside ``taken_ids``."""
    attempt = 0
    while (wid := writer_id_slot(f"{identity}\nevents\n{notifier}", attempt)) in taken_ids:
        attempt += 1
    return {
        "name": name,
        "dataset_writer_id": wid,
        "writer_group": group,
        "notifier": notifier,
        "event_type": ALARM_TYPE,
        "select": list(ALARM_SELECT),
    }
