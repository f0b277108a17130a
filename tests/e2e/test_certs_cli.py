"""`opcua-mqtt certs`: a development PKI that the bridge's pieces accept."""

from __future__ import annotations

import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from opcua_mqtt.core.signing import Signer, TrustStore, sign_message, verify_message

EXE = str(Path(sys.executable).with_name("opcua-mqtt"))
STEMS = ("ca", "broker", "bridge-mqtt", "mqtt-client", "metadata-signer", "opcua-client")


def _certs(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, "certs", "--dir", str(tmp_path / "pki"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_certs_writes_every_pair_with_private_keys_readable_only_by_the_owner(
    tmp_path: Path,
) -> None:
    run = _certs(tmp_path, "--broker-host", "broker.plant.local", "--broker-host", "10.0.0.5")
    assert run.returncode == 0, run.stderr
    for stem in STEMS:
        key = tmp_path / "pki" / f"{stem}.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert (tmp_path / "pki" / f"{stem}.pem").exists()
    broker = x509.load_pem_x509_certificate((tmp_path / "pki" / "broker.pem").read_bytes())
    san = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "broker.plant.local"} <= set(san.get_values_for_type(x509.DNSName))
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "10.0.0.5"}
    opcua = x509.load_pem_x509_certificate((tmp_path / "pki" / "opcua-client.pem").read_bytes())
    uris = opcua.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert uris.get_values_for_type(x509.UniformResourceIdentifier)[0].startswith("urn:opcua-mqtt")


def test_publisher_id_names_the_bridge_certificate_for_an_acl_by_identity(tmp_path: Path) -> None:
    run = _certs(tmp_path, "--publisher-id", "hall2-filler-plc")
    assert run.returncode == 0, run.stderr
    pem = (tmp_path / "pki" / "bridge-mqtt.pem").read_bytes()
    name = x509.load_pem_x509_certificate(pem).subject
    assert [a.value for a in name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)] == [
        "hall2-filler-plc"
    ]


def test_the_metadata_signer_signs_what_the_ca_verifies(tmp_path: Path) -> None:
    assert _certs(tmp_path).returncode == 0
    pki = tmp_path / "pki"
    signer = Signer.from_pem(
        (pki / "metadata-signer.key").read_bytes(), (pki / "metadata-signer.pem").read_bytes()
    )
    now = datetime.now(UTC)
    signed = sign_message({"MessageType": "ua-metadata", "x": 1}, signer, issued_at=now)
    result = verify_message(signed, TrustStore.from_pem((pki / "ca.pem").read_bytes()), at=now)
    assert result.ok, result.detail


def test_existing_keys_are_not_overwritten_without_force(tmp_path: Path) -> None:
    assert _certs(tmp_path).returncode == 0
    before = (tmp_path / "pki" / "ca.key").read_bytes()
    again = _certs(tmp_path)
    assert again.returncode == 1
    assert "already exists" in again.stderr and "--force" in again.stderr
    assert (tmp_path / "pki" / "ca.key").read_bytes() == before
    assert _certs(tmp_path, "--force").returncode == 0
    assert (tmp_path / "pki" / "ca.key").read_bytes() != before
