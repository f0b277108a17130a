"""Print the values bridges publish, but only those whose metadata signature verified.

A subscriber as a historian or dashboard would write it with the opcua-mqtt Python API: connect
with its own client certificate (mutual TLS, see examples/mosquitto/), trust the CA that issued
the metadata signer's certificate, and skip every DataSet whose description nobody vouches for.

    python examples/subscriber.py mqtt.plant.local --ca certs/ca.pem \\
        --cert certs/historian.pem --key certs/historian.key --trust certs/signing-ca.pem
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path

from opcua_mqtt import MqttOptions, Subscriber, TlsOptions, TrustStore


async def main(args: argparse.Namespace) -> None:
    mqtt = MqttOptions(
        host=args.host,
        port=args.port,
        client_id=args.client_id,
        tls=TlsOptions(ca=args.ca, certificate=args.cert, private_key=args.key),
        session_expiry_s=0,  # nothing for the broker to keep for us after we leave
    )
    trust = TrustStore.from_pem(Path(args.trust).read_bytes())
    printed = 0
    # Data topics only; the Subscriber adds the metadata topics itself.
    async with Subscriber(mqtt, trust=trust, topic_filter="opcua/json/data/#") as sub:
        async for ds in sub:
            writer = f"{ds.publisher_id}/{ds.dataset_writer_name}"
            if not ds.verification.ok:  # unsigned, bad signature, untrusted or no metadata yet
                print(f"skipped {writer}: metadata {ds.verification.state.value}", flush=True)
                continue
            for name, field in ds.fields.items():
                stamp = field.source_timestamp.isoformat() if field.source_timestamp else "-"
                print(f"{writer} {name} = {field.value!r} {field.status.name} {stamp}", flush=True)
            printed += 1
            if args.count and printed >= args.count:
                return


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Print verified values.")
    parser.add_argument("host", help="broker host name (must match its certificate)")
    parser.add_argument("--port", type=int, default=8883)
    parser.add_argument("--ca", required=True, help="CA of the broker's certificate (PEM)")
    parser.add_argument("--cert", help="this subscriber's client certificate (PEM)")
    parser.add_argument("--key", help="its private key (PEM)")
    parser.add_argument("--trust", required=True, help="CA of the metadata signer (PEM)")
    parser.add_argument("--client-id", default="example-subscriber")
    parser.add_argument("--count", type=int, default=0, help="stop after N verified DataSets")
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a person stops it
        asyncio.run(main(parser.parse_args()))
