"""``opcua-mqtt call``: call an OPC UA method through a bridge."""

from __future__ import annotations

from typing import Any

import click
import orjson

from opcua_mqtt.cli.mqtt_options import mqtt_client_options
from opcua_mqtt.cli.request import request_options, send_request


@click.command()
@click.argument("broker")
@click.argument("object_id")
@click.argument("method_id")
@click.argument("arguments", nargs=-1)
@mqtt_client_options
@request_options
def call(
    broker: str,
    object_id: str,
    method_id: str,
    arguments: tuple[str, ...],
    mqtt_params: dict[str, Any],
    **request_params: Any,
) -> None:
    """Call METHOD_ID on OBJECT_ID with ARGUMENTS through a bridge; print the answer (JSON).

    OBJECT_ID and METHOD_ID are NodeIds in namespace-URI form (nsu=...;s=...). Each of
    ARGUMENTS is JSON: a plain value the bridge converts exactly to the argument's declared
    DataType, or a typed OPC UA JSON Variant ({"UaType":5,"Value":7}); anything that is not
    JSON is sent as a string. The answer's OutputArguments are OPC UA JSON Variants. The
    bridge must allow the method in commands.allow (docs/commands.md).

    \b
    Examples:
      opcua-mqtt call localhost:8883 'nsu=urn:plant;s=Control' 'nsu=urn:plant;s=Control.Reset' \\
          --publisher plant1-bridge --ca certs/ca.pem
      opcua-mqtt call broker:8883 'nsu=urn:plant;s=Line1' 'nsu=urn:plant;s=Line1.Start' \\
          3 '"fast"' --publisher plant1-bridge --ca ca.pem
    \b
    Exit codes: 0 called (and the server said Good), 1 refused or failed (the answer says why)
    or an answer whose signature does not verify, 3 broker unreachable, or it refused the
    connection or (MQTT 5) the request, 4 no answer within --timeout.
    """
    values: list[Any] = []
    for text in arguments:
        try:
            values.append(orjson.loads(text))
        except orjson.JSONDecodeError:
            values.append(text)
    target = {
        "Method": "Call",
        "ObjectId": object_id,
        "MethodId": method_id,
        "InputArguments": values,
    }
    send_request(broker, mqtt_params, [target], client_name="opcua-mqtt-call", **request_params)
