"""What ``write``, ``ack`` and ``call`` share: the options of a request to a bridge's command
topic, sending it, waiting for the answer and the exit code it gives."""

from __future__ import annotations

import asyncio
import math
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeVar

import click
import orjson

from opcua_mqtt.adapters.mqtt import MqttError, MqttOptions, MqttSession, Outgoing
from opcua_mqtt.cli.common import with_options
from opcua_mqtt.cli.mqtt_options import EXIT_BROKER, mqtt_options_from
from opcua_mqtt.core.signing import Signer, TrustStore, sign_message, verify_message
from opcua_mqtt.core.topics import TopicTree, command_topic, reply_topic

F = TypeVar("F", bound=Callable[..., Any])


def request_options(func: F) -> F:
    """Add the options of a request; the command receives ``request_params`` (a dict)."""
    options = [
        click.option(
            "--publisher",
            "publisher_id",
            required=True,
            help="PublisherId of the bridge that should carry out the request.",
        ),
        click.option("--prefix", default="opcua", show_default=True, help="Topic tree prefix."),
        click.option(
            "--request-id",
            help="Idempotency key (default: a new UUID). Sending the same id "
            "again returns the first answer and does nothing more.",
        ),
        click.option(
            "--deadline",
            "deadline_s",
            type=float,
            default=10.0,
            show_default=True,
            help="Seconds after which the bridge must not carry out the request any more (its "
            "Deadline; with MQTT 5 also its Message Expiry Interval, so the broker drops it "
            "by then).",
        ),
        click.option(
            "--timeout",
            type=float,
            default=15.0,
            show_default=True,
            help="Seconds to wait for the answer.",
        ),
        click.option(
            "--sign-key",
            type=click.Path(exists=True, dir_okay=False),
            help="Private key (PEM) to sign the request with (JwsSignature); needs --sign-cert.",
        ),
        click.option(
            "--sign-cert",
            type=click.Path(exists=True, dir_okay=False),
            help="The signing key's certificate, then its issuers (PEM), sent in the signature "
            "(x5c).",
        ),
        click.option(
            "--trust",
            "trust_file",
            type=click.Path(exists=True, dir_okay=False),
            help="CA bundle (PEM) of the bridge's signing key: the answer must carry a signature "
            "that verifies against it.",
        ),
    ]
    return with_options(func, options)


def send_request(
    broker: str,
    mqtt_params: dict[str, Any],
    targets: list[dict[str, Any]],
    *,
    publisher_id: str,
    prefix: str,
    request_id: str | None,
    deadline_s: float,
    timeout: float,
    sign_key: str | None,
    sign_cert: str | None,
    trust_file: str | None,
    client_name: str,
) -> NoReturn:
    """Send one request with ``targets``, print its answer (JSON) and exit with its code."""
    if (sign_key is None) != (sign_cert is None):
        raise click.UsageError("--sign-key and --sign-cert go together")
    signer = _load_signer(sign_key, sign_cert) if sign_key and sign_cert else None
    trust = _load_trust(trust_file) if trust_file else None
    options = mqtt_options_from(broker, mqtt_params, client_name)
    rid = request_id or str(uuid.uuid4())
    request: dict[str, Any] = {
        "RequestId": rid,
        "Deadline": (datetime.now(UTC) + timedelta(seconds=deadline_s))
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "Targets": targets,
    }
    topics = TopicTree(prefix=prefix)
    reply = reply_topic(topics, publisher_id, options.client_id)
    if options.protocol != "5":
        request["ReplyTo"] = reply  # MQTT 3.1.1 has no Response Topic property
    if signer is not None:
        request = sign_message(request, signer, issued_at=datetime.now(UTC))
    try:
        answer = asyncio.run(
            _ask(
                options,
                command_topic(topics, publisher_id),
                reply,
                request,
                timeout,
                expiry_s=max(1, math.ceil(deadline_s)),
            )
        )
    except MqttError as e:
        click.echo(f"error: {e}", err=True)
        raise SystemExit(EXIT_BROKER) from None
    if answer is None:
        click.echo(f"error: no answer from {publisher_id} within {timeout:g} s", err=True)
        raise SystemExit(4)
    sys.stdout.write(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode() + "\n")
    if trust is not None:
        verified = verify_message(answer, trust, at=datetime.now(UTC))
        if not verified:
            click.echo(
                f"error: the answer's signature does not verify: {verified.detail}", err=True
            )
            raise SystemExit(1)
    result = answer.get("Result", {}) if isinstance(answer, dict) else {}
    raise SystemExit(0 if result.get("Code", 0) == 0 else 1)


def _load_signer(key: str, chain: str) -> Signer:
    try:
        with open(key, "rb") as k, open(chain, "rb") as c:
            return Signer.from_pem(k.read(), c.read())
    except (OSError, ValueError, TypeError) as e:
        raise click.BadParameter(f"{key} / {chain}: unusable signing key: {e}") from None


def _load_trust(path: str) -> TrustStore:
    try:
        with open(path, "rb") as f:
            return TrustStore.from_pem(f.read())
    except (OSError, ValueError) as e:
        raise click.BadParameter(f"{path}: not a PEM CA bundle: {e}") from None


async def _ask(
    options: MqttOptions,
    topic: str,
    reply: str,
    request: dict[str, Any],
    timeout: float,
    *,
    expiry_s: int,
) -> Any:
    """Publish ``request`` and wait for its answer. With MQTT 5 the request expires at the
    broker after ``expiry_s`` (whole seconds, rounded up from the deadline): a command queued
    for an absent bridge is dropped instead of being carried out late."""
    answered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    refused = asyncio.Event()
    correlation = request["RequestId"].encode()

    def on_reply(_topic: str, payload: bytes, _props: dict[str, Any]) -> None:
        try:
            answer = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if (
            isinstance(answer, dict)
            and answer.get("RequestId") == request["RequestId"]
            and not answered.done()
        ):
            answered.set_result(answer)

    # An MQTT 5 broker that will not take the request (its ACL) says so in the PUBACK: no
    # answer can come then, so that ends the wait at once. MQTT 3.1.1 brokers refuse silently.
    session = MqttSession(
        options, on_refusal_change=lambda refusing: refused.set() if refusing else None
    )
    session.subscribe(reply, on_reply)
    await session.start(wait=True)
    await asyncio.sleep(0.1)  # let the SUBACK arrive before the bridge can answer
    props: dict[str, Any] = {}
    if options.protocol == "5":
        props = {
            "response_topic": reply,
            "correlation_data": correlation,
            "message_expiry_interval": expiry_s,
        }
    session.publish(Outgoing(topic, orjson.dumps(request), qos=1, properties=props))
    refusal = asyncio.ensure_future(refused.wait())
    try:
        await asyncio.wait(
            {answered, refusal}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if refused.is_set():
            raise MqttError(session.delivery.describe())
        return answered.result() if answered.done() else None
    finally:
        refusal.cancel()
        await session.stop(drain_s=1)
