"""A real Mosquitto over TLS, reached with gmqtt (MQTT 5): what the publisher will rely on.

These pin down the test infrastructure (PKI, broker fixtures) and gmqtt's behaviour with TLS,
including how a refusal looks from the client side.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest

from harness.mosquitto import MosquittoBroker, client_ssl_context
from harness.mqtt import MqttProbe
from harness.pki import CLIENT_COMMON_NAME

# Every byte value, so that any text decoding or re-encoding on the way would show.
BINARY_PAYLOAD = bytes(range(256)) * 4


async def _assert_pub_sub_roundtrip(probe: MqttProbe, topic: str) -> None:
    granted = await probe.subscribe(topic, qos=1)
    assert granted == [1]
    probe.publish(topic, BINARY_PAYLOAD, qos=1)
    received = await probe.next_message()
    assert received.topic == topic
    assert received.payload == BINARY_PAYLOAD
    assert received.qos == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_tls_client_trusting_test_ca_round_trips_binary_payload(
    mosquitto_tls: MosquittoBroker, host: str
) -> None:
    # check_hostname is on: 127.0.0.1 must match the IP SAN, localhost the DNS SAN.
    ctx = client_ssl_context(mosquitto_tls.ca_cert)
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    async with MqttProbe() as probe:
        await probe.connect(host, mosquitto_tls.port, ctx)
        assert probe.connected.is_set()
        await _assert_pub_sub_roundtrip(probe, "opcua-mqtt/test/tls")


async def test_tls_client_trusting_only_rogue_ca_fails_certificate_verification(
    mosquitto_tls: MosquittoBroker,
) -> None:
    async with MqttProbe() as probe:
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
            await probe.connect(
                mosquitto_tls.host,
                mosquitto_tls.port,
                client_ssl_context(mosquitto_tls.rogue_ca_cert),
                timeout=2.0,
            )
        assert not probe.connected.is_set()


async def test_mtls_client_with_ca_signed_cert_pub_subs_as_its_common_name(
    mosquitto_mtls: MosquittoBroker,
) -> None:
    async with MqttProbe() as probe:
        await probe.connect(mosquitto_mtls.host, mosquitto_mtls.port, mosquitto_mtls.ssl_context())
        await _assert_pub_sub_roundtrip(probe, "opcua-mqtt/test/mtls")
    # use_identity_as_username: the broker took the certificate's CN as the MQTT user name.
    identity = f"u'{CLIENT_COMMON_NAME}'"
    await mosquitto_mtls.wait_for_log(f"as {probe.client_id} (p5, c1, k10, {identity})")


async def test_mtls_client_without_cert_is_refused(mosquitto_mtls: MosquittoBroker) -> None:
    await _assert_refused(mosquitto_mtls, mosquitto_mtls.ssl_context(client_cert=False))
    await mosquitto_mtls.wait_for_log("peer did not return a certificate")


async def test_mtls_client_with_cert_from_rogue_ca_is_refused(
    mosquitto_mtls: MosquittoBroker,
) -> None:
    pki = mosquitto_mtls.pki
    ctx = client_ssl_context(pki.ca_cert, pki.rogue_client_cert, pki.rogue_client_key)
    await _assert_refused(mosquitto_mtls, ctx)
    await mosquitto_mtls.wait_for_log("certificate verify failed")


async def _assert_refused(broker: MosquittoBroker, ssl_context: ssl.SSLContext) -> None:
    """Refused = connect() raised a TLS/connection error, or the link dropped before CONNACK.

    With TLS 1.3 the client finishes its side of the handshake before the broker checks the
    client certificate: the refusal is a TLS alert after CONNECT was sent, gmqtt turns it into a
    disconnect, and connect() keeps waiting for a CONNACK that never comes (it does not raise).
    """
    probe = MqttProbe()
    connecting = asyncio.ensure_future(probe.connect(broker.host, broker.port, ssl_context))
    dropped = asyncio.ensure_future(probe.disconnected.wait())
    waiters: set[asyncio.Future[Any]] = {connecting, dropped}
    try:
        done, _ = await asyncio.wait(waiters, timeout=2.0, return_when=asyncio.FIRST_COMPLETED)
        assert done, f"broker neither refused nor accepted within 2 s\n{broker.log_text()}"
        if connecting in done:
            with pytest.raises((ssl.SSLError, ConnectionError)):
                connecting.result()
        assert not probe.connected.is_set()
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        await probe.close()


async def test_broker_restart_keeps_port_and_accepts_clients_again(
    mosquitto_tls: MosquittoBroker,
) -> None:
    port, first_pid = mosquitto_tls.port, mosquitto_tls.pid
    await mosquitto_tls.astop()
    assert not mosquitto_tls.running
    async with MqttProbe() as probe:
        with pytest.raises(ConnectionRefusedError):
            await probe.connect(mosquitto_tls.host, port, mosquitto_tls.ssl_context(), timeout=2.0)
    await mosquitto_tls.astart()
    assert mosquitto_tls.port == port
    assert mosquitto_tls.pid != first_pid
    async with MqttProbe() as probe:
        await probe.connect(mosquitto_tls.host, port, mosquitto_tls.ssl_context())
        await _assert_pub_sub_roundtrip(probe, "opcua-mqtt/test/restart")
