"""What asyncua logs that the adapter reports itself, or that must never be logged: filters on
asyncua's loggers, installed once by connection.py."""

from __future__ import annotations

import logging
from collections.abc import Set

from asyncua import ua


class _RedactActivateSession(logging.Filter):
    """Drop asyncua's DEBUG dump of the ActivateSession request (it holds the password)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            return not isinstance(args[0], ua.ActivateSessionRequest)
        return True


class _ExpectedNoise(logging.Filter):
    """Drop asyncua warnings about what is expected: that a lost connection it is asked to
    close is closed already (see connection.py ``_close``), that a server shutting down
    answered the pending Publish with a fault saying the session is gone (session.py reports
    that loss; the bridge logs it once), that a response came for a request no longer awaited
    (the second Publish in flight, cancelled at the loss), and that the server revised the
    session timeout (servers may; asyncua's line even names the secure channel's timeout as the
    one requested)."""

    def __init__(self, lost_status_names: Set[str]) -> None:
        super().__init__()
        self._lost = lost_status_names

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        args = record.args if isinstance(record.args, tuple) else ()
        return not (
            text.endswith("was called but connection is closed")
            or text.startswith("Requested session timeout to be")
            or text == "Future for request id %s is already done"
            or (
                text.startswith("ServiceFault (")
                and len(args) == 3
                and args[0] in self._lost
                and str(args[2]).endswith("PublishRequest")
            )
        )


def install(lost_status_names: Set[str]) -> None:
    """Add the filters to asyncua's client loggers; ``lost_status_names``: the StatusCode
    names of a fault that means the session or connection is gone."""
    redactor = _RedactActivateSession()
    for name in ("asyncua.client.ua_client.UASocketProtocol", "asyncua.client.ua_client.UaClient"):
        logging.getLogger(name).addFilter(redactor)
    noise = _ExpectedNoise(lost_status_names)
    for name in (
        "asyncua.client.client",
        "asyncua.client.ua_session.UaSession",
        "asyncua.client.ua_client.UaClient",
        "asyncua.client.ua_client.UASocketProtocol",
    ):
        logging.getLogger(name).addFilter(noise)
