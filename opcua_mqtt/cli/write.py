"""``opcua-mqtt write``: send one write-back request to a bridge and print its answer."""

from __future__ import annotations

from typing import Any

import click
import orjson

from opcua_mqtt.cli.mqtt_options import mqtt_client_options
from opcua_mqtt.cli.request import request_options, send_request

_NODE_ID_PREFIXES = ("nsu=", "ns=", "i=", "s=", "g=", "b=")


@click.command()
@click.argument("broker")
@click.argument("target")
@click.argument("value")
@mqtt_client_options
@click.option("--index-range", help="OPC UA IndexRange, e.g. 2 or 1:3, to write part of an array.")
@request_options
def write(
    broker: str,
    target: str,
    value: str,
    mqtt_params: dict[str, Any],
    index_range: str | None,
    **request_params: Any,
) -> None:
    """Ask a bridge to write VALUE to TARGET and print its answer (JSON).

    TARGET is Writer/Field as in the bridge's configuration, or a NodeId in namespace-URI
    form (nsu=...;s=...). VALUE is JSON: a plain value the bridge converts exactly to the
    node's DataType (42, 1.5, true, "text", [1,2,3]) or a typed OPC UA JSON Variant
    ({"UaType":10,"Value":1.5}); anything that is not JSON is sent as a string.

    \b
    Examples:
      opcua-mqtt write localhost:8883 Filler/Setpoint 42.5 --publisher line1 --ca certs/ca.pem \\
          --cert certs/mqtt-client.pem --key certs/mqtt-client.key
      opcua-mqtt write broker:8883 'nsu=urn:plant;s=Line1.Mode' '{"UaType":6,"Value":2}' \\
          --publisher plant1-bridge --ca ca.pem --cert me.pem --key me.key
    \b
    The answer comes on <prefix>/json/reply/<PublisherId>/<client id>: the bridge answers only
    below its reply prefixes, so the broker's ACL need give a requester only that subtree.
    With --sign-key/--sign-cert the request is signed (docs/write-back.md); with --trust the
    answer's signature (the bridge's metadata signing key) must verify.

    \b
    Exit codes: 0 written, 1 refused or failed (the answer says why) or an answer whose
    signature does not verify, 3 broker unreachable, or it refused the connection or (MQTT 5)
    the request, e.g. by its ACL, 4 no answer within --timeout (also what a refused request
    looks like with MQTT 3.1.1).
    """
    try:
        parsed: Any = orjson.loads(value)
    except orjson.JSONDecodeError:
        parsed = value
    item: dict[str, Any] = {"Value": parsed}
    if target.startswith(_NODE_ID_PREFIXES):
        item["NodeId"] = target
    else:
        writer, sep, field = target.partition("/")
        if not sep or not writer or not field:
            raise click.BadParameter("TARGET is Writer/Field or a NodeId (nsu=...;s=...)")
        item |= {"Writer": writer, "Field": field}
    if index_range:
        item["IndexRange"] = index_range
    send_request(broker, mqtt_params, [item], client_name="opcua-mqtt-write", **request_params)
