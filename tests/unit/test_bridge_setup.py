"""What `run` checks in the files a configuration names before it starts anything."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from opcua_mqtt.bridge.from_config import bridge_setup
from opcua_mqtt.core.config.check import config_from_dict
from opcua_mqtt.devpki import write_pki


def _setup(pki: Path, config_path: Path) -> None:
    config = config_from_dict(
        {
            "version": 1,
            "publisher_id": "p",
            "opcua": {"endpoint": "opc.tcp://127.0.0.1:4840"},
            "mqtt": {
                "host": "127.0.0.1",
                "tls": {
                    "ca": str(pki / "ca.pem"),
                    "certificate": str(pki / "bridge-mqtt.pem"),
                    "private_key": str(pki / "bridge-mqtt.key"),
                },
            },
            "metadata_signing": {
                "private_key": str(pki / "metadata-signer.key"),
                "certificate_chain": str(pki / "metadata-signer.pem"),
            },
            "writer_groups": [],
        }
    )
    bridge_setup(config, config_path)


def test_private_keys_readable_by_every_user_are_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pki = tmp_path / "certs"
    write_pki(pki, bridge_name="p")
    with caplog.at_level(logging.WARNING, logger="opcua_mqtt.bridge.from_config"):
        _setup(pki, tmp_path / "bridge.yaml")
    assert caplog.records == []  # certs writes keys 0600

    (pki / "metadata-signer.key").chmod(0o644)
    (pki / "bridge-mqtt.key").chmod(0o640)  # a group that needs it: no warning
    with caplog.at_level(logging.WARNING, logger="opcua_mqtt.bridge.from_config"):
        _setup(pki, tmp_path / "bridge.yaml")
    assert [r.getMessage() for r in caplog.records] == [
        f"private key {pki / 'metadata-signer.key'} is readable by every user of this machine "
        f"(mode 0644): run chmod 600 {pki / 'metadata-signer.key'} (or 640 for a group that "
        "needs it)"
    ]


def test_a_signer_bound_to_another_publisher_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Subscribers would refuse every signature: say so at start, with the command that fixes it."""
    pki = tmp_path / "certs"
    write_pki(pki, bridge_name="line2")
    with caplog.at_level(logging.WARNING, logger="opcua_mqtt.bridge.from_config"):
        _setup(pki, tmp_path / "bridge.yaml")
    assert [r.getMessage() for r in caplog.records] == [
        f"the metadata signer {pki / 'metadata-signer.pem'} is bound to 'line2', not to "
        "publisher_id 'p': subscribers will refuse its signatures (re-issue it with "
        "`opcua-mqtt certs --publisher-id p`, or give them a signer map)"
    ]
