"""``map a.json b.json …``: the mapping of several servers as one configuration with one
source per server.

Each server is mapped on its own (core/mapping.py), so its DataSetFieldIds stay derived from
its own ApplicationUri (else endpoint) and its NodeIds: mapping it alone or beside others gives
the same field ids. Its writer groups are prefixed with its source name (``<source>_<group>``,
group names being unique in a file) and name it in ``source``. DataSetWriterIds are assigned
once over the writers of all servers, each keyed by its server's identity and object, so that
they stay unique across servers and a server's ids move only when another one's collide.
"""

from __future__ import annotations

import copy
import urllib.parse
from collections.abc import Sequence
from typing import Any

from opcua_mqtt.core.address_space import BrowseResult
from opcua_mqtt.core.mapping import MappingPlan, assign_writer_ids, sanitize_name


def source_names(endpoints: Sequence[str]) -> list[str]:
    """A stable name per server: the endpoint's host (``host-port`` when a host serves more
    than one), made safe like other names; a repeated endpoint gets ``-2``, ``-3``, …"""
    hosts: list[tuple[str, str]] = []
    for endpoint in endpoints:
        try:
            parts = urllib.parse.urlsplit(endpoint)
            host, port = parts.hostname or "", str(parts.port or "")
        except ValueError:
            host, port = "", ""
        hosts.append((sanitize_name(host) or "server", port))
    out: list[str] = []
    for host, port in hosts:
        shared = len({p for h, p in hosts if h == host}) > 1
        name = f"{host}-{port}" if shared and port else host
        candidate, n = name, 1
        while candidate in out:
            n += 1
            candidate = f"{name}-{n}"
        out.append(candidate)
    return out


def merge_plans(plans: Sequence[tuple[BrowseResult, MappingPlan]]) -> MappingPlan:
    """One document reading from every server of ``plans`` (each the mapping of one browse
    result, its ``opcua`` section filled in); a single plan is returned as it is."""
    if len(plans) == 1:
        return plans[0][1]
    names = source_names([result.endpoint for result, _ in plans])
    keys: list[dict[int, str]] = []  # per server: its DataSetWriterId -> writer key
    for result, plan in plans:
        identity = result.server_uri or result.endpoint
        keys.append({wid: f"{identity}\n{key}" for key, wid in plan.writer_ids.items()})
    ids = assign_writer_ids(k for per in keys for k in per.values())
    document = copy.deepcopy(plans[0][1].document)
    del document["opcua"]
    sources: list[dict[str, Any]] = []
    groups: list[dict[str, Any]] = []
    writable: list[dict[str, Any]] = []
    for name, (_, plan), own in zip(names, plans, keys, strict=True):
        doc = copy.deepcopy(plan.document)
        sources.append({"name": name, **doc["opcua"]})
        for group in doc["writer_groups"]:
            for writer in group["writers"]:
                writer["dataset_writer_id"] = ids[own[writer["dataset_writer_id"]]]
            groups.append({"name": f"{name}_{group.pop('name')}", "source": name, **group})
        for node in doc["write_back"]["writable_nodes"]:
            writable.append({**node, "field": f"{name}_{node['field']}"})
    document["sources"] = sources  # the order of the sections is the writer's (Config.to_json)
    document["writer_groups"] = groups
    document["write_back"]["writable_nodes"] = writable
    return MappingPlan(
        document=document,
        variables=sum(p.variables for _, p in plans),
        mapped=sum(p.mapped for _, p in plans),
        skipped=[s for _, p in plans for s in p.skipped],
    )
