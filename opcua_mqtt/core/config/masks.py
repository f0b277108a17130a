"""The content-mask rules of a configuration (Part 14 §6.3.2): what the specification forbids is
an error, what leaves a subscriber unable to use the messages is a warning."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opcua_mqtt.core.config.model import Path
from opcua_mqtt.core.config.report import Report
from opcua_mqtt.core.messages.settings import (
    DATASET_CONTENT_NAMES,
    DM,
    KEEP_ALIVE_MARKERS,
    NETWORK_CONTENT_NAMES,
    NM,
    dataset_header_mask,
    mask_names,
    network_mask,
)

if TYPE_CHECKING:
    from opcua_mqtt.core.config.rules import Resolver


def default_mask_rules(resolver: Resolver, report: Report) -> None:
    """Check the ``defaults`` NetworkMessage mask even where no writer group uses it."""
    names, path = resolver.get("network_message_content", [])
    _network_rules(network_mask(names), path, report)


def mask_rules(group: Mapping[str, Any], gpath: Path, resolver: Resolver, report: Report) -> None:
    """Check the masks in force for one writer group and its writers."""
    names, nm_path = resolver.get("network_message_content", [(group, gpath)])
    nm = network_mask(names)
    header = bool(nm & NM.NETWORK_MESSAGE_HEADER)
    _network_rules(nm, nm_path, report)
    writers = group["writers"]
    bundled = bool(group.get("bundle_writers")) and len(writers) > 1
    if bundled and nm & NM.SINGLE_DATASET_MESSAGE:
        report.add(
            nm_path,
            f"SingleDataSetMessage puts one DataSetMessage in each NetworkMessage (Part 14 "
            f"§6.3.2.1.1), but writer group {group['name']!r} bundles {len(writers)} writers "
            "into one: leave out SingleDataSetMessage or bundle_writers",
        )
    masks: dict[int, Path] = {}  # DataSetMessage mask -> the first writer with it
    for wi, writer in enumerate(writers):
        wpath: Path = (*gpath, "writers", wi)
        levels = [(writer, wpath), (group, gpath)]
        dm_names, dm_path = resolver.get("dataset_message_content", levels)
        dm = dataset_header_mask(dm_names)
        masks.setdefault(int(dm), wpath)
        # Set in the file (not the standard layout): warnings about what it leaves out apply.
        explicit = dm_path[0] != "defaults" or "dataset_message_content" in resolver.defaults
        key_frames, _ = resolver.get("key_frame_count", levels)
        _dataset_rules(nm, dm, explicit, dm_path, nm_path, header, bundled, key_frames, report)
    if bundled and len(masks) > 1:
        first, other, *_ = masks.values()
        report.add(
            (*other, "dataset_message_content"),
            "writers bundled into one NetworkMessage share one DataSetMessage layout: expected "
            f"the same dataset_message_content as {'/'.join(map(str, first))}",
        )


def _network_rules(nm: NM, path: Path, report: Report) -> None:
    if not nm & NM.NETWORK_MESSAGE_HEADER:
        header_only = NM.PUBLISHER_ID | NM.DATASET_CLASS_ID | NM.WRITER_GROUP_NAME
        members = mask_names(nm & header_only, NETWORK_CONTENT_NAMES)
        if members:
            report.add(
                path,
                f"{', '.join(members)} {'is a member' if len(members) == 1 else 'are members'} "
                "of the NetworkMessage header (Part 14 §7.2.5.3; §6.3.2.1.1: without "
                "NetworkMessageHeader the PublisherId and DataSetClassId bits shall be 0): "
                "add NetworkMessageHeader or leave them out",
            )
    if nm & NM.DATASET_CLASS_ID:
        report.add(
            path,
            "DataSetClassId is never written: the bridge's DataSets belong to no DataSetClass",
            "warning",
        )
    if nm & NM.REPLY_TO:
        report.add(
            path, "ReplyTo is not used in Part 14 1.05 (§6.3.2.1.1): nothing is written", "warning"
        )


def _dataset_rules(
    nm: NM,
    dm: DM,
    explicit: bool,
    path: Path,
    nm_path: Path,
    header: bool,
    bundled: bool,
    key_frames: int,
    report: Report,
) -> None:
    if not nm & NM.DATASET_MESSAGE_HEADER:
        if explicit and dm:
            report.add(
                path,
                f"{', '.join(mask_names(dm, DATASET_CONTENT_NAMES))}: DataSetMessage header "
                "members, but "
                f"the network_message_content in force ({'/'.join(map(str, nm_path))}) has no "
                "DataSetMessageHeader, so they would be ignored (Part 14 §6.3.2.1.1): add "
                "DataSetMessageHeader there or leave dataset_message_content out",
            )
        report.add(
            nm_path,
            "without DataSetMessageHeader a DataSetMessage is its bare Payload: no keep-alives "
            "are sent, and delta frames cannot be told from key frames (set key_frame_count 1)",
            "warning",
        )
        return
    if header and dm & DM.PUBLISHER_ID:
        report.add(
            path,
            "PublisherId in the DataSetMessage shall be left out when the NetworkMessage header "
            "is there (Part 14 §6.3.2.3.1, §7.2.5.4.1): leave it out, or NetworkMessageHeader",
        )
    if header and dm & DM.WRITER_GROUP_NAME and nm & NM.WRITER_GROUP_NAME:
        report.add(
            path,
            "WriterGroupName is not written in the DataSetMessage while the NetworkMessage "
            "header carries it (Part 14 §7.2.5.4.1)",
            "warning",
        )
    if not explicit:
        return
    missing = []
    if bundled and not dm & DM.DATASET_WRITER_ID:
        missing.append(
            "DataSetWriterId: several writers share one topic (bundle_writers), and a "
            "subscriber tells their messages apart by it"
            + (" (ours falls back on DataSetWriterName)" if dm & DM.DATASET_WRITER_NAME else "")
        )
    if not dm & DM.SEQUENCE_NUMBER:
        missing.append("SequenceNumber: a subscriber cannot detect lost messages")
    if not dm & DM.METADATA_VERSION:
        missing.append(
            "MetaDataVersion: a subscriber cannot tell which metadata version describes a message"
        )
    if key_frames != 1 and not dm & DM.MESSAGE_TYPE:
        missing.append(
            f"MessageType: with key_frame_count {key_frames} delta frames cannot be told from "
            "key frames (Part 14 Annex A.3.3.4, A.3.4.4 ask for it when KeyFrameCount is not 1)"
        )
    if not dm & KEEP_ALIVE_MARKERS:
        missing.append(
            "DataSetWriterId, MetaDataVersion, SequenceNumber or MessageType: without one of "
            "them a keep-alive cannot be told from a payload, so none are sent"
        )
    for text in missing:
        report.add(path, f"no {text}", "warning")
