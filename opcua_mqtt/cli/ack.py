"""``opcua-mqtt ack``: acknowledge (or confirm, or comment) an alarm through a bridge."""

from __future__ import annotations

from typing import Any

import click

from opcua_mqtt.cli.mqtt_options import mqtt_client_options
from opcua_mqtt.cli.request import request_options, send_request


@click.command()
@click.argument("broker")
@click.argument("condition_id")
@click.argument("event_id")
@mqtt_client_options
@click.option("--comment", default="", help="The comment that goes with it.")
@click.option(
    "--confirm",
    "method",
    flag_value="Confirm",
    help="Confirm instead of acknowledge (Part 9 §5.7.4).",
)
@click.option(
    "--comment-only",
    "method",
    flag_value="AddComment",
    help="Only add the comment (Part 9 §5.5.5).",
)
@request_options
def ack(
    broker: str,
    condition_id: str,
    event_id: str,
    mqtt_params: dict[str, Any],
    comment: str,
    method: str | None,
    **request_params: Any,
) -> None:
    """Acknowledge the alarm CONDITION_ID in the state EVENT_ID through a bridge; print the answer.

    CONDITION_ID is the condition's NodeId in namespace-URI form (nsu=...;s=...), EVENT_ID the
    EventId of the state being acknowledged, base64, both as the alarm's ua-event carries them
    (`opcua-mqtt listen --alarms --format json` prints both). An alarm that changed since has
    another EventId: the server then answers BadEventIdUnknown, and nothing is acknowledged.
    The bridge must allow the condition in commands.allow (docs/commands.md).

    \b
    Examples:
      opcua-mqtt ack localhost:8883 'nsu=urn:plant;s=Alarms.TankLevelAlarm' 'YcfB93lxJXH1...' \\
          --comment 'valve closed' --publisher plant1-bridge --ca certs/ca.pem
      opcua-mqtt ack broker:8883 'nsu=urn:plant;s=Alarms.TankLevelAlarm' 'YcfB...' --confirm \\
          --publisher plant1-bridge --ca ca.pem
    \b
    Exit codes: 0 done, 1 refused or failed (the answer says why) or an answer whose
    signature does not verify, 3 broker unreachable, or it refused the connection or (MQTT 5)
    the request, 4 no answer within --timeout.
    """
    target = {
        "Method": method or "Acknowledge",
        "ConditionId": condition_id,
        "EventId": event_id,
        "Comment": comment,
    }
    send_request(broker, mqtt_params, [target], client_name="opcua-mqtt-ack", **request_params)
