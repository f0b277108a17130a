"""``opcua-mqtt status``: which bridges a broker knows, from their retained ua-status and
ua-connection messages (Part 14 §7.2.5.5.5-6), for operators and health checks."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import click
import orjson
from asyncua import ua

from opcua_mqtt.adapters.mqtt import MqttError, MqttOptions, MqttSession
from opcua_mqtt.cli.common import format_option
from opcua_mqtt.cli.mqtt_options import EXIT_BROKER, mqtt_client_options, mqtt_options_from
from opcua_mqtt.core.errors import DecodeError
from opcua_mqtt.core.identity import topic_disagreement
from opcua_mqtt.core.messages.decode import decode_message
from opcua_mqtt.core.messages.metadata import ConnectionMessage, StatusMessage, status_overdue
from opcua_mqtt.core.topics import MessageType, TopicTree

#: Exit codes, also listed in the command's help.
EXIT_OK, EXIT_NONE_FOUND, EXIT_NOT_OPERATIONAL = 0, 4, 5  # and EXIT_BROKER, 3


@dataclass
class BridgeReport:
    """What the broker holds about one PublisherId (the topic level, which the ACL protects)."""

    publisher_id: str
    status: StatusMessage | None = None
    connection: ConnectionMessage | None = None
    problems: list[str] = field(default_factory=list)

    def overdue(self, now: datetime) -> bool:
        """A cyclic status promises the next one by NextReportTime; past it, the retained
        state is stale (the publisher may be gone without a last will)."""
        return self.status is not None and status_overdue(self.status, now)

    def operational(self, now: datetime) -> bool:
        """Operational, current, and nothing suspicious (a health check must not pass on a
        status someone else published under this PublisherId)."""
        return (
            self.status is not None
            and self.status.status == ua.PubSubState.Operational
            and not self.overdue(now)
            and not self.problems
        )

    def reported_at(self) -> datetime | None:
        """Newest timestamp the bridge gave: a non-cyclic ua-status has none, so the
        ua-connection's (sent at start-up) stands in."""
        stamps = [m.timestamp for m in (self.status, self.connection) if m and m.timestamp]
        return max(stamps, default=None)

    def to_json(self, now: datetime) -> dict[str, Any]:
        s, c = self.status, self.connection
        reported = self.reported_at()
        return {
            "publisher_id": self.publisher_id,
            "state": s.status.name if s else None,
            "state_code": int(s.status) if s else None,
            "operational": self.operational(now),
            "is_cyclic": s.is_cyclic if s else None,
            "status_timestamp": _iso(s.timestamp if s else None),
            "next_report_time": _iso(s.next_report_time if s else None),
            "overdue": self.overdue(now),
            "reported_at": _iso(reported),
            "age_s": round((now - reported).total_seconds(), 3) if reported else None,
            "connection": _connection_json(c) if c else None,
            "problems": self.problems,
        }


@click.command()
@click.argument("broker")
@mqtt_client_options
@click.option("--prefix", default="opcua", show_default=True, help="Topic tree prefix.")
@click.option(
    "--publisher",
    "publishers",
    multiple=True,
    help="Only this PublisherId (repeatable). A named bridge the broker does not know exits 4.",
)
@format_option(
    ["table", "json"], "A table (default on a terminal) or one JSON document (default otherwise)."
)
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=1.5,
    show_default=True,
    help="Seconds to collect retained messages after subscribing.",
)
@click.option(
    "--require-operational",
    is_flag=True,
    help="Exit 5 unless every bridge found is Operational (for health checks).",
)
def status(
    broker: str,
    mqtt_params: dict[str, Any],
    prefix: str,
    publishers: tuple[str, ...],
    fmt: str | None,
    wait: float,
    require_operational: bool,
) -> None:
    """List the bridges BROKER knows, with their PubSub state and connection.

    Reads the retained ua-status and ua-connection messages of the Part 14 topic tree
    (<prefix>/json/status/<PublisherId>, .../connection/<PublisherId>). A bridge publishes
    Operational once every field has delivered a value, Error while the OPC UA server refuses a
    field, PreOperational while a field waits for its first value, and Disabled when stopped
    cleanly; the broker publishes its last will, Error, when the bridge dies or loses its
    connection. AGE is the
    time since the newest timestamp the bridge sent (ua-status carries one only when cyclic,
    else the ua-connection's, sent at start-up).

    \b
    Examples:
      opcua-mqtt status localhost:8883 --ca certs/ca.pem --cert certs/mqtt-client.pem \\
          --key certs/mqtt-client.key
      opcua-mqtt status broker:8883 --ca ca.pem --cert me.pem --key me.key --format json
      opcua-mqtt status broker:8883 --ca ca.pem --publisher plant1-bridge --require-operational
    \b
    Exit codes: 0 bridges found (all Operational with --require-operational), 3 broker
    unreachable, or it refused the connection (untrusted certificate, client certificate or
    credentials refused), 4 no bridge found (or a --publisher not found),
    5 a bridge is not Operational (only with --require-operational).
    """
    options = replace(
        mqtt_options_from(broker, mqtt_params, "opcua-mqtt-status"),
        session_expiry_s=0,  # a one-shot reader: nothing for the broker to keep afterwards
    )
    try:
        topics = TopicTree(prefix=prefix)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--prefix") from None
    try:
        reports = asyncio.run(_collect(options, topics, publishers, wait))
    except MqttError as e:
        click.echo(f"error: {e}", err=True)
        raise SystemExit(EXIT_BROKER) from None
    now = datetime.now(UTC)
    found = sorted(reports.values(), key=lambda r: r.publisher_id)
    if (fmt or ("table" if sys.stdout.isatty() else "json")) == "table":
        click.echo(_table(found, now))
    else:
        doc = {
            "broker": f"{options.host}:{options.port}",
            "bridges": [r.to_json(now) for r in found],
        }
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    raise SystemExit(_exit_code(found, publishers, require_operational, topics, now))


def _exit_code(
    found: list[BridgeReport],
    publishers: tuple[str, ...],
    require_operational: bool,
    topics: TopicTree,
    now: datetime,
) -> int:
    missing = sorted(set(publishers) - {r.publisher_id for r in found})
    if missing or not found:
        where = ", ".join(missing) if missing else f"under {topics.prefix}/{topics.encoding}"
        click.echo(f"error: no bridge found: {where}", err=True)
        return EXIT_NONE_FOUND
    down = [r.publisher_id for r in found if not r.operational(now)]
    if require_operational and down:
        click.echo(f"error: not Operational: {', '.join(down)}", err=True)
        return EXIT_NOT_OPERATIONAL
    return EXIT_OK


async def _collect(
    options: MqttOptions, topics: TopicTree, publishers: tuple[str, ...], wait: float
) -> dict[str, BridgeReport]:
    reports: dict[str, BridgeReport] = {}

    def on_message(topic: str, payload: bytes, _props: dict[str, Any]) -> None:
        try:
            info = topics.parse(topic)
        except DecodeError:
            return  # not a standard topic: nothing to report under a PublisherId
        report = reports.setdefault(info.publisher_id, BridgeReport(info.publisher_id))
        try:
            message = decode_message(payload)
        except DecodeError as e:
            report.problems.append(f"undecodable message on {topic}: {e}")
            return
        # Shown with its problem (forged, or a misconfigured bridge) if it is of the topic's kind.
        if isinstance(message, StatusMessage) and info.message_type is MessageType.STATUS:
            report.status = message
        elif isinstance(message, ConnectionMessage) and info.message_type is MessageType.CONNECTION:
            report.connection = message
        if problem := topic_disagreement(info, message):
            report.problems.append(f"message on {topic} {problem}")

    session = MqttSession(options)
    for kind in (MessageType.STATUS, MessageType.CONNECTION):
        for publisher in publishers or (None,):
            session.subscribe(topics.filter(kind, publisher), on_message)
    await session.start(wait=True)
    try:
        await asyncio.sleep(wait)
    finally:
        await session.stop(drain_s=0)
    return reports


def _connection_json(c: ConnectionMessage) -> dict[str, Any]:
    conn = c.connection
    address = getattr(conn.Address, "Url", None)
    return {
        "timestamp": _iso(c.timestamp),
        "address": address,
        "transport_profile": conn.TransportProfileUri,
        "writer_groups": [
            {
                "name": g.Name,
                "publishing_interval_ms": g.PublishingInterval,
                "writers": [
                    {"name": w.Name, "dataset_writer_id": w.DataSetWriterId}
                    for w in g.DataSetWriters or []
                ],
            }
            for g in conn.WriterGroups or []
        ],
    }


def _table(found: list[BridgeReport], now: datetime) -> str:
    lines = [
        f"{'PUBLISHER':<24}{'STATE':<20}{'REPORTED (UTC)':<21}{'AGE':>6}  "
        f"{'GROUPS':>6}{'WRITERS':>8}  ADDRESS"
    ]
    for r in found:
        state = r.status.status.name if r.status else "unknown"
        if r.overdue(now):
            state += " (late)"
        elif r.problems:
            state += " (!)"
        reported = r.reported_at()
        stamp = reported.strftime("%Y-%m-%d %H:%M:%S") if reported else "-"
        age = _age((now - reported).total_seconds()) if reported else "-"
        conn = r.connection.connection if r.connection else None
        groups = (conn.WriterGroups or []) if conn else []
        writers = sum(len(g.DataSetWriters or []) for g in groups)
        address = getattr(conn.Address, "Url", None) if conn else None
        lines.append(
            f"{r.publisher_id:<24.23}{state:<20.19}{stamp:<21}{age:>6}  "
            f"{len(groups):>6}{writers:>8}  {address or '-'}"
        )
        lines += [f"  ! {p}" for p in r.problems]
    return "\n".join(lines)


def _age(seconds: float) -> str:
    """Compact age for a table column: 42s, 17m, 5h, 3d."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size:.0f}{unit}"
    return f"{max(seconds, 0):.0f}s"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
