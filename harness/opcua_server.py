"""The asyncua test server, a program of its own.

Run the asyncua server by hand (from the repository root)::

    python -m harness.opcua_server --port 4840 --variables 10000 \
        [--cert-dir D] [--users operator:secret-pw] [--ready-file F] [--manifest M]
        [--aspace-cache PATH]
        [--churn N --churn-interval-ms MS [--churn-direct]]

It serves ``opc.tcp://127.0.0.1:<port>/opcua-mqtt/test`` (application URI
``urn:opcua-mqtt:test-server``) with

* security None and Basic256Sha256 SignAndEncrypt; the server certificate (DER) and key (PEM) are
  generated into ``--cert-dir`` at first start (self-signed RSA 2048, application URI in the SAN);
  any client certificate is accepted unless ``--trusted-client-certs DIR`` names the only ones;
* identities anonymous and user name / password (``operator`` / ``secret-pw`` by default); a
  wrong password gets BadUserAccessDenied;
* an address space of at least ``--variables`` variables in namespace
  ``urn:opcua-mqtt:test:plant``, described in :func:`build_address_space` and listed in a JSON
  manifest (see :func:`make_manifest`);
* ``Objects/Oddities``: values encoded as other servers encode them (an empty matrix the way
  node-opcua writes ns=0;i=24187, a matrix whose dimensions do not fit its elements) next to a
  plain Double, listed in the manifest under ``oddities``;
* a ``Control`` object whose methods change the model at run time (AddVariable, ChangeDataType,
  DeleteVariable) or count the values clients wrote (WriteCount) and the Write calls that
  carried them (WriteCalls), and ``Plant/Simulation``
  variables that change every 100 ms;
* with ``--churn N``, N more Double variables ``Plant/Churn/Block<k>/V<i>`` (string NodeIds
  ``Plant.Churn.V<i>``, listed in the manifest under ``churn``) that all get a new value every
  ``--churn-interval-ms``: the tick number as a Double, SourceTimestamp taken just before each
  block is written. For load tests (bench/bench_bridge.py); it prints ``CHURN {json}`` once a
  second on stdout so a caller can see whether the server keeps up. ``--churn-direct`` makes
  the same notifications at about a quarter of the server's CPU per change
  (harness/churn_direct.py); without it the changes go through asyncua's
  ``write_attribute_value``, as the tests use it.

With ``--aspace-cache PATH`` the server keeps asyncua's standard address space (namespace 0,
some thousands of nodes) in a shelf at PATH: the first server to start with it builds the nodes
and writes the shelf, the next ones load nodes from it as they are used (asyncua's own start-up
cache), about 0.9 s of CPU less per start. The test fixtures share one per test session.

It prints ``READY <endpoint>`` on stdout (and writes ``--ready-file``, a JSON object) only once
the address space is complete and the server listens. SIGTERM / SIGINT stop it cleanly, and it
stops by itself when its parent process goes away (a killed pytest leaves no server behind).

The address space is built by harness/plant_model.py, listed by harness/plant_manifest.py and
changed by harness/plant_control.py; harness/opcua_servers.py starts this program (and
``interop/plant-server.mjs``) for tests and benchmarks.

Built-in types served (OPC 10000-6 §5.1.2, ids 0..25): all of them. Null (0) only as a scalar
without value (DataType BaseDataType); Variant (24) only as a one-dimensional array of Variants
(DataType BaseDataType), because a Variant cannot directly contain a scalar Variant
(OPC 10000-6 §5.2.2.16). ExtensionObject (22) variables hold ``Range`` structures (DataType
Range, i=884).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import fcntl
import json
import logging
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from harness.pki import atomic_write, make_application_certificate
from harness.plant_control import add_control_methods
from harness.plant_manifest import make_manifest, nodeid_to_string
from harness.plant_model import (
    APPLICATION_URI,
    CHURN_BLOCK,
    DEFAULT_MAX_SESSION_TIMEOUT_S,
    DEFAULT_USERS,
    DEFAULT_VARIABLES,
    NAMESPACE_URI,
    RESOURCE_PATH,
    SERVER_CERT_NAME,
    SERVER_KEY_NAME,
    SIMULATION_PERIOD_S,
    Model,
    build_address_space,
    build_churn_variables,
)
from harness.processes import LOOPBACK

_logger = logging.getLogger("harness.opcua_server")

# --------------------------------------------------------------------------------------------
# Certificates
# --------------------------------------------------------------------------------------------


def ensure_server_certificate(cert_dir: Path) -> tuple[Path, Path]:
    """The server's certificate (DER) and key (PEM) in ``cert_dir``, generated if missing.

    Several servers may share ``cert_dir``: a lock file keeps them from writing a certificate
    of one key next to another key.
    """
    cert_dir.mkdir(parents=True, exist_ok=True)
    cert_path = cert_dir / SERVER_CERT_NAME
    key_path = cert_dir / SERVER_KEY_NAME
    with open(cert_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (cert_path.exists() and key_path.exists()):
            make_application_certificate(
                cert_path, key_path, APPLICATION_URI, common_name="opcua-mqtt test server"
            )
    return cert_path, key_path


async def init_server(server: Any, shelf: Path | None) -> None:
    """``server.init()``, with the standard address space from the shelf ``shelf`` once one is
    complete (``shelf.ready`` exists), else building it; the first server to get there also
    writes the shelf, and a server that finds another one writing it builds without it.

    asyncua takes a shelf as present when a file ``shelf`` (or ``shelf.db``) exists, but
    ``dbm.dumb`` (the only dbm some Pythons have) writes ``shelf.dat`` and ``shelf.dir``: an
    empty file ``shelf`` makes asyncua look (a real dbm file there is only touched).
    """
    if shelf is None:
        await server.init()
        return
    ready = shelf.with_name(shelf.name + ".ready")
    if ready.exists():
        await server.init(shelf)
        return
    shelf.parent.mkdir(parents=True, exist_ok=True)
    with open(shelf.with_name(shelf.name + ".lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            await server.init()  # another server is writing the shelf
            return
        if ready.exists():  # written between the first look and the lock
            await server.init(shelf)
            return
        # Left by a writer that died: asyncua would load it rather than write it anew.
        for stale in (shelf, shelf.with_suffix(".db")):
            stale.unlink(missing_ok=True)
        await server.init(shelf)  # builds the nodes, then writes the shelf
        shelf.touch()
        ready.touch()


class _UserManager:
    """Anonymous users and the configured user names; a wrong password returns None, which
    asyncua answers with BadUserAccessDenied."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> Any:
        from asyncua.crypto.permission_rules import User, UserRole

        if username is None:
            # asyncua's default ruleset lets role Anonymous do nothing at all (not even Read):
            # anonymous sessions get role User, which may read, write, browse, call.
            return User(role=UserRole.User, name="anonymous")
        if username in self.users and self.users[username] == password:
            return User(role=UserRole.User, name=username)
        return None


def _trusted_client_validator(trust_dir: Path) -> Callable[..., Any]:
    """Accept a client certificate only if its exact DER is in ``trust_dir`` (.der/.pem/.crt,
    read at every CreateSession, so tests may add certificates while the server runs)."""

    async def validate(cert: x509.Certificate, _app_description: Any) -> None:
        from asyncua import ua
        from asyncua.common.utils import ServiceError

        wanted = cert.public_bytes(serialization.Encoding.DER)
        for path in sorted(trust_dir.glob("*")):
            try:
                data = path.read_bytes()
                trusted = (
                    x509.load_pem_x509_certificate(data)
                    if data.lstrip().startswith(b"-----BEGIN")
                    else x509.load_der_x509_certificate(data)
                )
            except (OSError, ValueError):
                continue
            if trusted.public_bytes(serialization.Encoding.DER) == wanted:
                return
        raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)

    return validate


async def _simulate(server: Any, model: Model, stop: asyncio.Event) -> None:
    from asyncua import ua

    sim = model.simulation
    tick = 0
    parent = os.getppid()
    while not stop.is_set():
        tick += 1
        now = dt.datetime.now(dt.UTC)
        phase = tick * SIMULATION_PERIOD_S
        updates = {
            "Sine": ua.Variant(math.sin(phase), ua.VariantType.Double),
            "Counter": ua.Variant(tick % 2**32, ua.VariantType.UInt32),
            "Toggle": ua.Variant(tick % 2 == 0, ua.VariantType.Boolean),
            "Sawtooth": ua.Variant(float(tick % 100), ua.VariantType.Float),
            "Clock": ua.Variant(now, ua.VariantType.DateTime),
            "Wave": ua.Variant(
                [math.sin(phase + i / 8 * math.tau) for i in range(8)], ua.VariantType.Double
            ),
        }
        for name, variant in updates.items():
            await server.write_attribute_value(
                sim[name], ua.DataValue(variant, SourceTimestamp=now, ServerTimestamp=now)
            )
        if tick % 10 == 0 and os.getppid() != parent:
            _logger.warning("parent process %d went away: stopping", parent)
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SIMULATION_PERIOD_S)


async def _churn(
    server: Any, nodes: list[Any], period_s: float, stop: asyncio.Event, *, direct: bool
) -> None:
    """Write the tick number to every churn variable every ``period_s``, block by block.

    Ticks run on a fixed schedule; a tick that starts late is counted, and a server more than one
    period behind skips ahead (counted too) rather than bursting. Once a second a ``CHURN`` line
    on stdout gives the totals. ``direct``: through harness/churn_direct.py (the same changes
    for the same monitored items at a fraction of the server's CPU), else through asyncua's
    ``write_attribute_value``.
    """
    from asyncua import ua

    from harness.churn_direct import (
        GOOD,
        DirectWriter,
        SharedValue,
        encode_publish_responses_directly,
    )

    if direct:
        encode_publish_responses_directly()
        write_block = DirectWriter(server.iserver.aspace, nodes).write
    else:
        write = server.iserver.aspace.write_attribute_value  # no per-call service overhead
        value_attr = ua.AttributeIds.Value

        async def write_block(block: list[Any], dv: Any) -> None:
            for nodeid in block:
                await write(nodeid, value_attr, dv)

    blocks = [nodes[i : i + CHURN_BLOCK] for i in range(0, len(nodes), CHURN_BLOCK)]
    loop = asyncio.get_running_loop()
    started = loop.time()
    due = started
    tick = late = skipped = values = 0
    busy = max_tick = 0.0
    next_report = started + 1.0
    while not stop.is_set():
        tick += 1
        t0 = time.perf_counter()
        for block in blocks:
            now = dt.datetime.now(dt.UTC)
            dv = SharedValue(
                ua.Variant(float(tick), ua.VariantType.Double),
                StatusCode=GOOD,
                SourceTimestamp=now,
                ServerTimestamp=now,
            )
            await write_block(block, dv)
            values += len(block)
            await asyncio.sleep(0)  # let Publish requests through between blocks
        spent = time.perf_counter() - t0
        busy += spent
        max_tick = max(max_tick, spent)
        due += period_s
        now_t = loop.time()
        if now_t > due:
            late += 1
            if now_t - due > period_s:
                missed = int((now_t - due) / period_s)
                skipped += missed
                due += missed * period_s
        if now_t >= next_report:
            next_report = now_t + 1.0
            report = {
                "t": time.time(),
                "tick": tick,
                "values": values,
                "elapsed_s": round(now_t - started, 3),
                "busy_s": round(busy, 3),
                "late_ticks": late,
                "skipped_ticks": skipped,
                "max_tick_ms": round(max_tick * 1000, 1),
            }
            print("CHURN " + json.dumps(report), flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, due - loop.time()))


async def serve(args: argparse.Namespace) -> None:
    from asyncua import Server, ua

    started = time.perf_counter()
    users = dict(DEFAULT_USERS)
    if args.users:
        users = {}
        for spec in args.users:
            for pair in spec.split(","):
                name, sep, password = pair.partition(":")
                if not sep or not name:
                    raise SystemExit(f"bad --users entry {pair!r}: want name:password")
                users[name] = password
    cert_dir = Path(args.cert_dir) if args.cert_dir else Path(tempfile.mkdtemp(prefix="opcua-pki-"))
    cert_path, key_path = ensure_server_certificate(cert_dir)

    server = Server(user_manager=_UserManager(users))
    await init_server(server, Path(args.aspace_cache) if args.aspace_cache else None)
    endpoint = f"opc.tcp://{LOOPBACK}:{args.port}{RESOURCE_PATH}"
    server.set_endpoint(endpoint)
    server.set_server_name("opcua-mqtt test server")
    await server.set_application_uri(APPLICATION_URI)
    server.product_uri = "urn:opcua-mqtt:test-server:product"
    server.set_security_policy(
        [ua.SecurityPolicyType.NoSecurity, ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt]
    )
    server.set_identity_tokens([ua.AnonymousIdentityToken, ua.UserNameIdentityToken])
    await server.load_certificate(str(cert_path))
    await server.load_private_key(str(key_path))
    if args.trusted_client_certs:
        server.set_certificate_validator(_trusted_client_validator(Path(args.trusted_client_certs)))
    # else: a test server, so ANY client certificate is accepted on Basic256Sha256 (asyncua does
    # not check client certificates unless a validator is set).
    server.iserver.max_session_timeout_ms = args.max_session_timeout * 1000

    build_started = time.perf_counter()
    model = await build_address_space(server, args.variables)
    churn_nodes = build_churn_variables(server, model, args.churn) if args.churn > 0 else []
    control_methods = await add_control_methods(server, model)
    build_seconds = time.perf_counter() - build_started
    namespaces = list(await server.get_namespace_array())
    manifest = make_manifest(server, model, namespaces)
    manifest["endpoint"] = endpoint
    manifest["control"].update(
        {k: nodeid_to_string(v, namespaces) for k, v in control_methods.items()}
    )
    manifest["build_seconds"] = round(build_seconds, 3)
    if churn_nodes:
        manifest["churn"] = {
            "count": len(churn_nodes),
            "interval_ms": args.churn_interval_ms,
            "nodeids": [nodeid_to_string(n, namespaces) for n in churn_nodes],
        }

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    await server.start()
    try:
        startup_seconds = time.perf_counter() - started
        manifest["startup_seconds"] = round(startup_seconds, 3)
        _announce(args, endpoint, manifest, cert_path, startup_seconds, build_seconds)
        churn = None
        if churn_nodes:
            churn = asyncio.create_task(
                _churn(
                    server,
                    churn_nodes,
                    args.churn_interval_ms / 1000,
                    stop,
                    direct=args.churn_direct,
                )
            )
        try:
            await _simulate(server, model, stop)
        finally:
            if churn is not None:
                churn.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await churn
    finally:
        await server.stop()


def _announce(
    args: argparse.Namespace,
    endpoint: str,
    manifest: dict[str, Any],
    cert_path: Path,
    startup_seconds: float,
    build_seconds: float,
) -> None:
    manifest_path: Path | None = None
    if args.manifest:
        manifest_path = Path(args.manifest)
    elif args.ready_file:
        manifest_path = Path(args.ready_file).parent / "manifest.json"
    if manifest_path is not None:
        atomic_write(manifest_path, json.dumps(manifest, indent=1).encode())
    else:
        print("MANIFEST " + json.dumps(manifest, separators=(",", ":")), flush=True)
    if args.ready_file:
        ready = {
            "endpoint": endpoint,
            "pid": os.getpid(),
            "manifest": str(manifest_path),
            "server_cert": str(cert_path),
            "namespace_uri": NAMESPACE_URI,
            "variable_count": manifest["variable_count"],
            "startup_seconds": round(startup_seconds, 3),
            "build_seconds": round(build_seconds, 3),
        }
        atomic_write(Path(args.ready_file), json.dumps(ready).encode())
    print(f"READY {endpoint}", flush=True)
    print(
        f"opcua_server: {manifest['variable_count']} variables, address space built in "
        f"{build_seconds:.2f} s, ready after {startup_seconds:.2f} s",
        file=sys.stderr,
        flush=True,
    )


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m harness.opcua_server", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--variables", type=int, default=DEFAULT_VARIABLES)
    parser.add_argument("--cert-dir", help="server certificate and key (generated if missing)")
    parser.add_argument(
        "--users",
        action="append",
        help="name:password[,name:password...] (default operator:secret-pw)",
    )
    parser.add_argument("--ready-file", help="written (JSON) once the server is ready")
    parser.add_argument(
        "--aspace-cache",
        metavar="PATH",
        help="shelf of the standard address space: written at the first start, loaded after",
    )
    parser.add_argument(
        "--manifest", help="where to write the manifest (default: next to --ready-file)"
    )
    parser.add_argument(
        "--trusted-client-certs",
        help="accept only the client certificates in this folder (default: accept any)",
    )
    parser.add_argument(
        "--max-session-timeout",
        type=float,
        default=DEFAULT_MAX_SESSION_TIMEOUT_S,
        help="seconds; sessions of vanished clients (and their subscriptions) end after this",
    )
    parser.add_argument(
        "--churn",
        type=int,
        default=0,
        metavar="N",
        help="add N Double variables under Plant/Churn that change every --churn-interval-ms",
    )
    parser.add_argument(
        "--churn-interval-ms",
        type=float,
        default=1000.0,
        metavar="MS",
        help="period of the --churn writes (default 1000)",
    )
    parser.add_argument(
        "--churn-direct",
        action="store_true",
        help="queue the --churn changes for the monitored items directly and encode Publish "
        "responses with each shared DataValue encoded once (harness/churn_direct.py: the same "
        "notifications at a fraction of the CPU; default: asyncua's write_attribute_value)",
    )
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
