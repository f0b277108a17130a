"""Splitting one configuration into N complete ones, for N bridges against one (clustered) broker.

Why whole writer groups: a writer group is one publishing schedule and one NetworkMessage
stream, and its writers' sequence numbers and metadata belong to its publisher; split across
bridges it would be two streams claiming one name. So shards take whole groups, balanced by
item count (largest first, each to the shard with the fewest items so far: deterministic, within
one group's size of the best balance). A group keeps its source (OPC UA server): a shard lists
the sources its groups read from, and only those, so it opens no session it does not use.

Each shard is a publisher of its own (Part 14 §5.2.2: a PublisherId names one publisher):
``<publisher_id>-shard<k>of<N>``, its MQTT client id derived the same way, its disk spool (if
any) in a sub-directory of its own. Ids depend only on the original ids, k and N, so re-sharding
with the same N gives the same ids. Write-back follows the data: a shard allows the writes of its
own fields; NodeId entries that name no published field, and the writable_nodes, stay with shard
1 (docs/scale-out.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from opcua_mqtt.core.config.model import Config, WriterGroupConfig
from opcua_mqtt.core.config.rules import write_back_allowed
from opcua_mqtt.core.errors import OpcUaMqttError
from opcua_mqtt.core.uajson.node_ids import canonical_node_id


class ShardError(OpcUaMqttError, ValueError):
    """A configuration that cannot be split as asked."""


@dataclass(frozen=True)
class Shard:
    number: int  # 1..N
    config: Config

    @property
    def items(self) -> int:
        return sum(1 for _ in self.config.fields())


def shard_id(publisher_id: str, number: int, count: int) -> str:
    return f"{publisher_id}-shard{number}of{count}"


def _items(group: WriterGroupConfig) -> int:
    return sum(len(w.fields) for w in group.writers)


def split(config: Config, count: int) -> list[Shard]:
    """``config`` as ``count`` complete configurations; see the module docstring."""
    groups = config.writer_groups
    if count < 1:
        raise ShardError(f"the number of shards must be at least 1, not {count}")
    if count > len(groups):
        raise ShardError(
            f"cannot split {len(groups)} writer groups into {count} shards: a writer group is "
            "never split across bridges; use fewer shards or more writer groups"
        )
    members: list[list[WriterGroupConfig]] = [[] for _ in range(count)]
    load = [0] * count
    for group in sorted(groups, key=lambda g: (-_items(g), g.name)):
        k = min(range(count), key=lambda i: (load[i], i))
        members[k].append(group)
        load[k] += _items(group)
    order = {g.name: i for i, g in enumerate(groups)}
    return [
        Shard(k + 1, _shard(config, tuple(sorted(m, key=lambda g: order[g.name])), k + 1, count))
        for k, m in enumerate(members)
    ]


def _shard(
    config: Config, groups: tuple[WriterGroupConfig, ...], number: int, count: int
) -> Config:
    publisher_id = shard_id(config.publisher_id, number, count)
    mqtt = config.mqtt
    client_id = shard_id(mqtt.client_id, number, count) if mqtt.client_id else None
    spool = mqtt.spool
    if spool.directory is not None:
        spool = dataclasses.replace(spool, directory=f"{spool.directory}/shard{number}of{count}")
    used = {g.source for g in groups}
    shard = dataclasses.replace(
        config,
        publisher_id=publisher_id,
        sources=tuple(s for s in config.sources if s.name in used),
        writer_groups=groups,
        mqtt=dataclasses.replace(mqtt, client_id=client_id, spool=spool),
    )
    wb = config.write_back
    if not wb.allow and not wb.writable_nodes:
        return shard
    own = {canonical_node_id(f.node_id) for _g, _w, f in shard.fields()}
    published = {canonical_node_id(f.node_id) for _g, _w, f in config.fields()}
    allow = []
    for entry in wb.allow:
        matched = write_back_allowed(shard, [entry])
        if matched & own or (number == 1 and matched and not matched & published):
            allow.append(entry)
    return dataclasses.replace(
        shard,
        write_back=dataclasses.replace(
            wb, allow=tuple(allow), writable_nodes=wb.writable_nodes if number == 1 else ()
        ),
    )


def move_paths(config: Config, move: Callable[[str], str]) -> Config:
    """``config`` with every file and directory it names passed through ``move`` (for a shard
    written to another directory than its original: relative paths are relative to the file)."""

    def moved(path: str | None) -> str | None:
        return None if path is None else move(path)

    m, s, wb = config.mqtt, config.metadata_signing, config.write_back
    return dataclasses.replace(
        config,
        mqtt=dataclasses.replace(
            m,
            tls=dataclasses.replace(
                m.tls,
                ca=moved(m.tls.ca),
                certificate=moved(m.tls.certificate),
                private_key=moved(m.tls.private_key),
            ),
            spool=dataclasses.replace(m.spool, directory=moved(m.spool.directory)),
        ),
        sources=tuple(
            dataclasses.replace(
                o,
                certificate=moved(o.certificate),
                private_key=moved(o.private_key),
                trust_dir=moved(o.trust_dir),
            )
            for o in config.sources
        ),
        metadata_signing=dataclasses.replace(
            s, private_key=moved(s.private_key), certificate_chain=moved(s.certificate_chain)
        ),
        write_back=dataclasses.replace(wb, trust=moved(wb.trust)),
    )
