"""Write-back: MQTT commands that write OPC UA nodes, deny-by-default and always answered.

Order of checks for one request (docs/write-back.md): rate limit per requester under a global
cap (before anything is parsed: a refusal is counted, not logged one by one), size, syntax and
schema, reply topic (below the reply prefixes, never the Part 14 tree), the requester's signature
and permission, deadline and MQTT 5 message expiry, idempotency (a repeated RequestId of the same
requester gets the first answer again, nothing is written twice), then per target: the
requester's allow-list, the server's AccessLevel and UserAccessLevel, exact conversion to the
node's DataType (strings within the node's and the server's MaxStringLength, ByteStrings within
MaxByteStringLength); only then the Write. Requests are carried out in arrival order, those that
wait together in one batch: one Read and one Write for all of them (write_batch.py). Every
request and target is logged once: a refusal with its reason, a Write with the old value, the
new value, the result and who asked; every answer says who asked and is signed with the
bridge's metadata signing key when it has one. Nothing here can stop publishing: a failure
becomes an error response (or only a log line when there is nowhere to answer), and an answer
is never published to a topic the broker would refuse, since the broker drops a client that
does so.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asyncua import ua

from opcua_mqtt.adapters.mqtt import MqttSession, Outgoing
from opcua_mqtt.adapters.opcua.session import OpcUaSession
from opcua_mqtt.bridge.commands import Commands
from opcua_mqtt.bridge.write_back_support import (
    BRIEF,
    extra,
    failure_status,
    lenient,
    prop,
    publishable,
    status_name,
)
from opcua_mqtt.bridge.write_batch import Job, TargetWriter, WriteQueue, claims_of
from opcua_mqtt.core.messages.members import dumps
from opcua_mqtt.core.rate_limit import RefusalTally, RequesterLimits
from opcua_mqtt.core.request_auth import (
    IdempotencyCache,
    Identity,
    RequestAuth,
    claimed_identity,
    reply_topic_problem,
    request_digest,
)
from opcua_mqtt.core.signing import Signer, sign_message
from opcua_mqtt.core.write_request.request import (
    RequestError,
    WriteRequest,
    parse_request,
)
from opcua_mqtt.core.write_request.response import error_response

_log = logging.getLogger(__name__)

S = ua.StatusCodes
_WRITE_BIT = 1 << 1  # AccessLevel CurrentWrite (OPC 10000-3 §8.57)


@dataclass(frozen=True)
class WriteBackSettings:
    allowed: frozenset[str] = frozenset()  # canonical NodeIds (core.config.write_back_allowed)
    max_bytes: int = 65536
    max_targets: int = 100
    rate_per_s: float = 20.0  # per requester
    burst: int = 40
    idempotency_window_s: float = 300.0
    total_rate_per_s: float = 200.0  # all requesters together
    total_burst: int = 400
    #: Where answers may go (reply_prefix(TopicTree()) when the configuration names none).
    reply_prefixes: tuple[str, ...] = ("opcua/json/reply",)
    tree: tuple[str, str] = ("opcua", "json")  # (prefix, encoding): no answers into it
    auth: RequestAuth = field(default_factory=RequestAuth)
    signer: Signer | None = None  # signs the answers
    summary_interval_s: float = 10.0  # one log line for the requests refused for rate
    commands_allow: tuple[str, ...] = ()  # commands.allow (docs/commands.md)


class WriteBack:
    """Serves the command topic of one bridge."""

    def __init__(
        self,
        settings: WriteBackSettings,
        *,
        mqtt: MqttSession,
        topic: str,
        fields: Mapping[tuple[str, str], str],
        session: Callable[[str | None, tuple[str, str] | None], OpcUaSession | None],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self._mqtt = mqtt
        self._fields = dict(fields)  # (writer, field) -> NodeId string
        self._session = session
        self._monotonic = monotonic
        self._seen = IdempotencyCache(settings.idempotency_window_s)
        self._rate = RequesterLimits(
            settings.rate_per_s, settings.burst, settings.total_rate_per_s, settings.total_burst
        )
        self._rate_refused = RefusalTally()
        self._summary: asyncio.TimerHandle | None = None
        self._targets = TargetWriter(
            allowed=settings.allowed, auth=settings.auth, fields=self._fields, session=session
        )
        self._queue = WriteQueue(self._run_batch)  # arrival order, batched (write_batch.py)
        self._commands = Commands(settings.commands_allow)
        # requests by result (the metrics read them): good, bad (a target not written),
        # refused (as a whole), failed (an exception: outcome unknown), duplicate,
        # rate_limited (refused for rate before they were parsed)
        self.counts: dict[str, int] = {}

    def attach(self) -> None:
        self._mqtt.subscribe(self.topic, self._on_message, qos=1)
        _log.info(
            "write-back listening on %s (%d nodes allowed; answers below %s)",
            self.topic,
            len(self.settings.allowed),
            ", ".join(self.settings.reply_prefixes),
        )

    def close(self) -> None:
        """Log the last summary of requests refused for rate, if any are counted."""
        if self._summary is not None:
            self._summary.cancel()
        self._log_summary()

    def _on_message(self, _topic: str, payload: bytes, props: dict[str, Any]) -> None:
        """Called for every command, in the MQTT client's receive path, so that data
        publishing is never queued behind commands: a request over its requester's rate (or
        the global cap) is dropped here, before it is parsed or logged."""
        now = self._monotonic()
        reply: str | None = prop(props, "response_topic")
        claimed = claimed_identity(reply, self.settings.reply_prefixes)
        if self._rate.allow(f"reply:{reply}", now) is not None:
            self._refused_for_rate(claimed, reply, prop(props, "correlation_data"))
            return
        self._serve(payload, props, now)

    def _refused_for_rate(self, who: str, reply: str | None, correlation: Any) -> None:
        """Count a request refused for rate; the first of each summary interval is answered
        (when its MQTT 5 Response Topic is usable), the others only counted."""
        self._count("rate_limited")
        if not self._rate_refused.add(who):
            return
        self._summary = asyncio.get_running_loop().call_later(
            self.settings.summary_interval_s, self._log_summary
        )
        if reply is not None and self._reply_problem(reply) is None:
            message = (
                "rate limit exceeded; retry later (further refusals within "
                f"{self.settings.summary_interval_s:g} s are not answered)"
            )
            response = error_response(None, S.BadResourceUnavailable, message)
            self._answer(reply, correlation, self._seal(response, Identity(who, proven=False)))

    def _log_summary(self) -> None:
        self._summary = None
        line = self._rate_refused.summary(self.settings.summary_interval_s)
        if line is not None:
            _log.warning("%s", line)

    def _serve(self, payload: bytes, props: Mapping[str, Any], arrived: float) -> None:
        """Check a request and queue it; it is answered when its batch is done (:meth:`_done`).
        Runs in the receive path, without a task of its own: the request's one wait is for its
        batch, and a callback on that costs less than a task per request."""
        reply: str | None = prop(props, "response_topic")  # MQTT 5: it wins over ReplyTo
        correlation = prop(props, "correlation_data")
        expiry = prop(props, "message_expiry_interval")  # what is left of it, from the broker
        expires = arrived + expiry if isinstance(expiry, int) else None
        request_id: str | None = None
        who: Identity | None = None
        try:
            request = parse_request(
                payload, max_bytes=self.settings.max_bytes, max_targets=self.settings.max_targets
            )
            request_id = request.request_id
            if reply is None:
                reply = request.reply_to
            if reply is not None and (problem := self._reply_problem(reply)) is not None:
                raise RequestError(  # logged once; _refuse_whole does not answer there
                    S.BadRequestNotAllowed if publishable(reply) else S.BadDecodingError,
                    f"will not answer to {BRIEF.repr(reply)}: {problem}; not written",
                )
            who = self.settings.auth.identify(
                request,
                claimed_identity(reply, self.settings.reply_prefixes),
                datetime.now(UTC),
            )
            if who.proven and self._rate.allow(who.key, arrived, total=False) is not None:
                self._refused_for_rate(who.name, None, None)
                return
            self._check_in_time(request, expires)
            key = (who.key, request_id)
            digest = request_digest(request)
            if request_id is not None and self._cached(key, digest, reply, correlation, who):
                return
            claims = claims_of(request, who, self._fields)
            job = Job(request, who, key, digest, expires, reply, correlation, claims)
            self._queue.submit(job)
        except Exception as e:  # noqa: BLE001 - see _settle
            self._settle(e, payload, request_id, who, reply, correlation)
            return
        job.done.add_done_callback(functools.partial(self._done, job, payload))

    def _done(self, job: Job, payload: bytes, done: asyncio.Future[bytes | None]) -> None:
        """Send a carried out request's answer, or refuse it for what its batch raised."""
        if done.cancelled():  # the bridge is stopping
            return
        error = done.exception()
        if error is None:
            response = done.result()
            if response is not None:  # None: a copy's answer was repeated instead
                self._answer(job.reply, job.correlation, response)
        elif isinstance(error, Exception):
            request = job.request
            self._settle(error, payload, request.request_id, job.who, job.reply, job.correlation)

    def _settle(
        self,
        e: Exception,
        payload: bytes,
        request_id: str | None,
        who: Identity | None,
        reply: str | None,
        correlation: Any,
    ) -> None:
        """Refuse a request whole for ``e``: a RequestError says why; anything else is a bug or
        a lost session, logged with its traceback and answered as failed."""
        if isinstance(e, RequestError):
            self._count("refused")
            self._refuse_whole(payload, request_id, who, reply, correlation, e.status, e.message)
            return
        self._count("failed")
        _log.error(
            "write request %s from %s failed",
            request_id or "(no id)",
            who or claimed_identity(reply, self.settings.reply_prefixes),
            exc_info=e,
        )
        self._refuse_whole(
            payload,
            request_id,
            who,
            reply,
            correlation,
            failure_status(e),
            f"failed ({type(e).__name__}); whether anything was written is unknown",
        )

    async def _run_batch(self, jobs: list[Job], checked: Callable[[], None]) -> None:
        """Carry out a batch of requests whose turn has come; settles every job (and calls
        ``checked()`` once only its Writes are left, see WriteQueue). Idempotency,
        deadline and expiry are checked again, as a request may have waited: a copy answered
        meanwhile must not write twice, and a stale request not at all."""
        live: list[Job] = []
        for job in jobs:
            try:
                if job.request.request_id is not None and self._cached(
                    job.key, job.digest, job.reply, job.correlation, job.who
                ):
                    job.done.set_result(None)
                    continue
                self._check_in_time(job.request, job.expires)
            except RequestError as e:
                job.done.set_exception(e)
                continue
            live.append(job)
        if not live:
            return
        try:
            outcomes = await self._outcomes(live, checked)
        except Exception as e:  # noqa: BLE001 - each request answers it (see _settle)
            for job in live:
                job.done.set_exception(e)
            return
        for job, (response, good) in zip(live, outcomes, strict=True):
            self._count("good" if good else "bad")
            sealed = self._seal(response, job.who)
            if job.request.request_id is not None:
                self._seen.put(job.key, sealed, self._monotonic(), job.digest)
            job.done.set_result(sealed)

    async def _outcomes(
        self, jobs: list[Job], checked: Callable[[], None]
    ) -> list[tuple[dict[str, Any], bool]]:
        """The answers to ``jobs`` in their order: the writes in one batch, the commands
        (Acknowledge, Call, ...: targets that are all commands, bridge/commands.py) one by one."""
        writes = [job for job in jobs if not job.exclusive]
        written = iter(await self._targets.execute(writes, checked) if writes else [])
        session = self._session(None, None)  # commands go to the first source
        out = []
        for job in jobs:
            if not job.exclusive:
                out.append(next(written))
            else:
                out.append(await self._commands.execute(job.request, job.who, session))
        return out

    def _reply_problem(self, reply: str) -> str | None:
        if not publishable(reply):
            return "not a topic name to publish to"
        return reply_topic_problem(reply, self.settings.reply_prefixes, self.settings.tree)

    def _cached(
        self,
        key: tuple[str, str | None],
        digest: str,
        reply: str | None,
        correlation: Any,
        who: Identity,
    ) -> bool:
        """Whether the request was answered already (and is now answered again); a RequestId
        this requester used for another request is refused."""
        now = self._monotonic()
        cached = self._seen.get(key, now)
        if cached is None:
            return False
        if self._seen.digest(key, now) != digest:
            raise RequestError(
                S.BadRequestNotAllowed,
                "this RequestId was used by this requester for another request; not written",
            )
        self._repeat(key[1] or "", who, reply, correlation, cached)
        return True

    def _seal(self, response: dict[str, Any], who: Identity | None) -> bytes:
        """The answer as sent: who asked, and the bridge's signature when it signs."""
        if who is not None:
            response["Requester"] = who.to_json()
        signer = self.settings.signer
        if signer is not None:
            try:
                response = sign_message(response, signer, issued_at=datetime.now(UTC))
            except (TypeError, ValueError) as e:  # a value JCS cannot hold: answered unsigned
                _log.warning("write answer sent unsigned: %s", e)
        return dumps(response)

    def _check_in_time(self, request: WriteRequest, expires: float | None) -> None:
        if request.expired(datetime.now(UTC)):
            raise RequestError(S.BadTimeout, "the request's deadline has passed; not written")
        if expires is not None and self._monotonic() >= expires:
            raise RequestError(
                S.BadTimeout, "the request's MQTT message expiry interval has passed; not written"
            )

    def _refuse_whole(
        self,
        payload: bytes,
        request_id: str | None,
        who: Identity | None,
        reply: str | None,
        correlation: Any,
        status: int,
        message: str,
    ) -> None:
        """Log and answer a request refused as a whole; its RequestId and ReplyTo are read
        leniently when the request did not parse, except from a payload too large to read."""
        if request_id is None or reply is None:
            lenient_id, lenient_reply = lenient(payload, self.settings.max_bytes)
            request_id = request_id or lenient_id
            reply = reply if reply is not None else lenient_reply
        if who is None:
            who = Identity(claimed_identity(reply, self.settings.reply_prefixes), proven=False)
        symbol = status_name(status)
        _log.warning(
            "write request %s from %s refused (%s): %s",
            request_id or "(no id)",
            who,
            symbol,
            message,
            extra=extra(request_id, who, result=symbol),
        )
        if reply is not None and self._reply_problem(reply) is None:
            response = error_response(request_id, status, message)
            self._answer(reply, correlation, self._seal(response, who))

    def _repeat(
        self, request_id: str, who: Identity, reply: str | None, correlation: Any, cached: bytes
    ) -> None:
        self._count("duplicate")
        _log.info(
            "write request %s from %s repeated: answered with the first answer, nothing written",
            request_id,
            who,
            extra=extra(request_id, who, result="Duplicate"),
        )
        self._answer(reply, correlation, cached)

    def _answer(self, reply: str | None, correlation: Any, payload: bytes) -> None:
        if reply is None:
            return  # fire and forget: the outcome is in the log lines of its targets
        props = {"correlation_data": correlation} if correlation is not None else {}
        self._mqtt.publish(Outgoing(reply, payload, qos=1, properties=props))

    def _count(self, result: str) -> None:
        self.counts[result] = self.counts.get(result, 0) + 1
