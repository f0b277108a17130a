"""Re-mapping into an existing configuration: what ``map`` found, with the file's hand edits kept.

``map`` owns what it reads from the server: the endpoint and ApplicationUri, the writer groups,
writers and fields (names, NodeIds, ids, types) and ``write_back.writable_nodes``. Everything else
in the file is the user's: the connection and its security, MQTT and TLS, metadata signing, the
defaults, write-back (enabled, allow-list, limits), metrics, and the options set on a writer
group, a writer or a field (a deadband, say). Those are kept, unless the command line gives a new
value; a place the file leaves empty (null) takes what ``map`` found. A group is matched by name,
a writer by DataSetWriterId (derived, so stable), a field by NodeId within its writer. Pure: no
I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

__all__ = ["MAP_OWNED", "keep_hand_edits"]

Place = tuple[str, ...]

#: What map writes from the server, never taken from the existing file.
MAP_OWNED: Final[frozenset[Place]] = frozenset(
    {
        ("version",),
        ("opcua", "endpoint"),
        ("opcua", "server_uri"),
        ("writer_groups",),
        ("write_back", "writable_nodes"),
    }
)
_GROUP_OWNED: Final = frozenset({"name", "writers"})
_WRITER_OWNED: Final = frozenset({"name", "dataset_writer_id", "fields"})
_FIELD_OWNED: Final = frozenset(
    {
        "name",
        "node_id",
        "dataset_field_id",
        "builtin_type",
        "data_type",
        "value_rank",
        "array_dimensions",
    }
)
_LISTS: Final = ("writers", "fields")


def keep_hand_edits(
    new: Mapping[str, Any], old: Mapping[str, Any], given: Collection[Place] = ()
) -> dict[str, Any]:
    """``new`` (what map made) with the user's parts of ``old`` (the existing file) put back.

    ``given`` names the places the command line set (``("mqtt", "host")``, or a whole section
    such as ``("metadata_signing",)``): there ``new`` wins. ``("writer_groups", option)`` means
    the command line set that option of every group and writer (``map --topic-template``).
    """
    out = _overlay(new, old, (), frozenset(given))
    replaced = frozenset(p[1] for p in given if len(p) == 2 and p[0] == "writer_groups")
    out["writer_groups"] = _keep_options(
        new.get("writer_groups", []), old.get("writer_groups"), replaced
    )
    return out


def _overlay(
    new: Mapping[str, Any], old: Mapping[str, Any], path: Place, given: frozenset[Place]
) -> dict[str, Any]:
    out = dict(new)
    for key, value in old.items():
        here = (*path, key)
        if here in MAP_OWNED or here in given or value is None:
            continue
        mine = new.get(key)
        if isinstance(value, Mapping) and isinstance(mine, Mapping):
            out[key] = _overlay(mine, value, here, given)
        else:
            out[key] = value
    return out


def _keep_options(
    new_groups: Sequence[Mapping[str, Any]], old_groups: Any, replaced: frozenset[str]
) -> list[Any]:
    """The writer groups map made, with the options the old file set on the same group, writer
    and field, but for the ``replaced`` ones of groups and writers."""
    old_by_name = {g.get("name"): g for g in _mappings(old_groups)}
    groups = []
    for group in new_groups:
        old_group = old_by_name.get(group["name"], {})
        old_writers = {w.get("dataset_writer_id"): w for w in _mappings(old_group.get("writers"))}
        writers = []
        for writer in group["writers"]:
            old_writer = old_writers.get(writer["dataset_writer_id"], {})
            old_fields = {f.get("node_id"): f for f in _mappings(old_writer.get("fields"))}
            fields = [
                _with_options(f, old_fields.get(f["node_id"], {}), _FIELD_OWNED)
                for f in writer["fields"]
            ]
            writers.append(
                _with_options({**writer, "fields": fields}, old_writer, _WRITER_OWNED | replaced)
            )
        groups.append(
            _with_options({**group, "writers": writers}, old_group, _GROUP_OWNED | replaced)
        )
    return groups


def _with_options(
    new: Mapping[str, Any], old: Mapping[str, Any], owned: frozenset[str]
) -> dict[str, Any]:
    """``new`` with the old entry's own options, placed before the lists (as a person writes
    them: ``name``, options, then ``writers``/``fields``)."""
    options = {k: v for k, v in old.items() if k not in owned}
    head = {k: v for k, v in new.items() if k not in _LISTS}
    tail = {k: v for k, v in new.items() if k in _LISTS}
    return {**head, **options, **tail}


def _mappings(items: Any) -> list[Mapping[str, Any]]:
    return [i for i in items if isinstance(i, Mapping)] if isinstance(items, list) else []
