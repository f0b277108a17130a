"""What the broker did with each QoS 1/2 publish: MQTT 5 reason codes, refusal episodes.

An MQTT 5 broker answers a PUBLISH it will not deliver with a PUBACK (QoS 1) or PUBREC (QoS 2)
reason code of 0x80 or above, e.g. 0x87 Not authorized for a topic its ACL denies. Such a
message is lost, not sent: it is counted per reason and, per topic, starts an *episode* that
is logged once (WARNING, naming the topic, the reason and the identity the broker sees) and
lasts until a later publish on that topic is acknowledged with success. While any episode
lasts the session is not delivering, which the owner learns through ``on_change``.

Pure bookkeeping, no gmqtt: the session feeds it packet ids and reason codes.
MQTT 3.1.1 has no reason codes (a broker refuses silently) and QoS 0 has no acknowledgement,
so neither can show here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

_log = logging.getLogger("opcua_mqtt.adapters.mqtt")

#: MQTT 5 reason codes (§2.4) a broker sends in PUBACK, PUBREC and DISCONNECT.
REASONS: dict[int, str] = {
    0x00: "Success",
    0x04: "Disconnect with Will Message",
    0x10: "No matching subscribers",
    0x80: "Unspecified error",
    0x81: "Malformed Packet",
    0x82: "Protocol Error",
    0x83: "Implementation specific error",
    0x87: "Not authorized",
    0x89: "Server busy",
    0x8B: "Server shutting down",
    0x8D: "Keep Alive timeout",
    0x8E: "Session taken over",
    0x90: "Topic Name invalid",
    0x91: "Packet Identifier in use",
    0x93: "Receive Maximum exceeded",
    0x94: "Topic Alias invalid",
    0x95: "Packet too large",
    0x96: "Message rate too high",
    0x97: "Quota exceeded",
    0x98: "Administrative action",
    0x99: "Payload format invalid",
    0x9A: "Retain not supported",
    0x9B: "QoS not supported",
    0x9C: "Use another server",
    0x9D: "Server moved",
    0x9E: "Shared Subscriptions not supported",
    0x9F: "Connection rate exceeded",
    0xA0: "Maximum connect time",
    0xA1: "Subscription Identifiers not supported",
    0xA2: "Wildcard Subscriptions not supported",
}

#: What a refusal most likely means, for the log line.
_HINTS = {
    0x87: "check the broker's ACL for this identity",
    0x90: "the broker does not accept this topic name",
    0x95: "the message exceeds the broker's maximum packet size",
    0x97: "the broker's quota for this client is exhausted",
}


def reason_name(code: int) -> str:
    """``Not authorized`` for 0x87; ``reason 0xNN`` for a code MQTT 5 does not define."""
    return REASONS.get(code, f"reason 0x{code:02X}")


def reason_label(code: int) -> str:
    """A metric label value: ``not_authorized`` for 0x87, ``0xnn`` for an unknown code."""
    name = REASONS.get(code)
    return name.lower().replace(" ", "_") if name else f"0x{code:02x}"


class Message(Protocol):
    """What the tracker needs to know of a message in flight."""

    @property
    def topic(self) -> str: ...

    @property
    def payload(self) -> bytes: ...


@dataclass(frozen=True)
class Refusal:
    topic: str
    reason: int

    def __str__(self) -> str:
        return f"{self.topic}: {reason_name(self.reason)} (0x{self.reason:02X})"


class DeliveryTracker:
    """Messages in flight by packet id, refusal counts per reason, and the open episodes.

    ``identity`` is how the broker knows this client (client id, user name, certificate
    subject), quoted in the log line (at ``log_level``: a one-shot command that reports the
    refusal itself wants it at DEBUG). ``on_change(True)`` is called when the first episode
    opens, ``on_change(False)`` when the last one ends.
    """

    def __init__(
        self,
        identity: str,
        on_change: Callable[[bool], None] | None = None,
        *,
        log_level: int = logging.WARNING,
    ) -> None:
        self.identity = identity
        self.on_change = on_change
        self.log_level = log_level  # of the line that opens an episode
        self.refused_counts: dict[int, int] = {}  # reason code -> messages refused
        self._in_flight: dict[int, Message] = {}
        self._episodes: dict[str, int] = {}  # topic -> reason of the open episode

    @property
    def refusing(self) -> bool:
        """Whether the broker refuses some topic now (an episode is open)."""
        return bool(self._episodes)

    @property
    def refusals(self) -> list[Refusal]:
        return [Refusal(t, r) for t, r in self._episodes.items()]

    def sent(self, mid: int, msg: Message) -> None:
        self._in_flight[mid] = msg

    def acknowledged(self, mid: int, reason: int) -> Message | None:
        """The broker's answer to packet ``mid``: the message if it was accepted, else None
        (also for an id this tracker does not know, e.g. a subscription's)."""
        msg = self._in_flight.pop(mid, None)
        if msg is None:
            return None
        if reason < 0x80:
            if self._episodes.pop(msg.topic, None) is not None:
                _log.info("MQTT broker accepts publishes on %s again", msg.topic)
                if not self._episodes and self.on_change is not None:
                    self.on_change(False)
            return msg
        self.refused_counts[reason] = self.refused_counts.get(reason, 0) + 1
        if self._episodes.get(msg.topic) != reason:
            first = not self._episodes
            self._episodes[msg.topic] = reason
            hint = _HINTS.get(reason, "the message is lost")
            _log.log(
                self.log_level,
                "MQTT broker refused a publish on %s: %s (0x%02X) for %s; %s. Messages on "
                "this topic are lost until the broker accepts one again",
                msg.topic,
                reason_name(reason),
                reason,
                self.identity,
                hint,
            )
            if first and self.on_change is not None:
                self.on_change(True)
        return None

    def keep_only(self, mids: Iterable[int]) -> list[int]:
        """Forget the messages whose ids are not in ``mids`` (gmqtt dropped them when the
        broker had no session for us); their ids, in the order they were sent."""
        alive = set(mids)
        gone = [mid for mid in self._in_flight if mid not in alive]
        for mid in gone:
            del self._in_flight[mid]
        return gone

    def describe(self) -> str:
        """One line for a command that must stop: what is refused, for whom, and the hint."""
        refusals = self.refusals
        text = "; ".join(str(r) for r in refusals[:3])
        if len(refusals) > 3:
            text += f"; and {len(refusals) - 3} more topics"
        hints = {_HINTS.get(r.reason, "") for r in refusals} - {""}
        return f"the broker refused the publish for {self.identity}: {text}" + "".join(
            f"; {h}" for h in sorted(hints)
        )
