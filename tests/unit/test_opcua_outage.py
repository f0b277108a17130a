"""The OPC UA reconnect policy (adapters/opcua/outage.py) and which connection failures count
as permanent (adapters/opcua/connection.py): an outage is one WARNING and one INFO however
many attempts fail, a permanent failure one ERROR a minute, and only a name that does not exist
(not a DNS server that does not answer) is a permanent "does not resolve"."""

from __future__ import annotations

import logging
import socket

import pytest

from opcua_mqtt.adapters.opcua.failures import OpcUaConnectionError, unreachable
from opcua_mqtt.adapters.opcua.outage import Outage

URL = "opc.tcp://plc1:4840"


def _levels(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.levelname for r in caplog.records if r.levelno >= logging.INFO]


def test_an_outage_is_one_warning_with_its_cause_and_one_info_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="opcua_mqtt.adapters.opcua.outage")
    outage = Outage(reconnect_max_s=4)
    outage.connected(URL)  # the first session: no outage to end
    assert outage.lost(URL, "the server closed the connection") <= 0.5
    refused = OpcUaConnectionError(f"cannot reach {URL}: connection refused", kind="unreachable")
    delays = [outage.failed(refused) for _ in range(8)]
    assert all(0 < d <= 4 for d in delays) and max(delays) > 1  # it backs off, capped
    assert outage.cause == str(refused) and outage.fatal.since is None
    outage.connected(URL)
    assert outage.cause is None
    assert _levels(caplog) == ["WARNING", "INFO"]
    assert "lost (the server closed the connection)" in caplog.records[0].getMessage()
    assert "up again after" in caplog.records[-1].getMessage()


def test_a_permanent_failure_is_one_error_a_minute_and_ends_with_any_other_outcome(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="opcua_mqtt.adapters.opcua.outage")
    outage = Outage(reconnect_max_s=4)
    denied = OpcUaConnectionError("the server refused user 'bridge'", kind="auth")
    assert denied.permanent
    for _ in range(5):
        outage.failed(denied)
    assert _levels(caplog) == ["ERROR"]
    assert outage.fatal.since is not None and outage.fatal.error is denied
    outage.failed(OpcUaConnectionError("connection refused", kind="unreachable"))
    assert outage.fatal.since is None


@pytest.mark.parametrize(
    ("errno", "permanent"),
    [(socket.EAI_NONAME, True), (socket.EAI_AGAIN, False)],
)
def test_only_a_name_that_does_not_exist_is_permanent(errno: int, permanent: bool) -> None:
    error = unreachable(URL, socket.gaierror(errno, "lookup failed"), 10.0)
    assert "does not resolve" in error.message
    assert error.permanent is permanent


def test_a_refused_or_silent_server_is_worth_trying_again() -> None:
    assert not unreachable(URL, ConnectionRefusedError(), 10.0).permanent
    assert not unreachable(URL, TimeoutError(), 10.0).permanent
    assert unreachable(URL, ValueError("not OPC UA"), 10.0).permanent
