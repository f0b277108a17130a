"""`opcua-mqtt certs`: a development PKI that the bridge's pieces accept."""

from __future__ import annotations

import grp
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
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
        if stem != "broker":  # see test_the_broker_key_is_readable_by_the_mosquitto_group...
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


EXAMPLE_DIR = Path(__file__).parents[2] / "examples" / "mosquitto"
EXAMPLE_ROOT = "/etc/mosquitto/opcua-mqtt"


def test_examples_mosquitto_is_what_certs_writes(tmp_path: Path) -> None:
    """examples/mosquitto/ is the output of the commands below, with the folder renamed."""
    made = _certs(
        tmp_path,
        *("--publisher-id", "hall2-filler-plc", "--bind", "0.0.0.0"),
        *("--broker-host", "broker.plant.local", "--client", "historian"),
    )
    assert made.returncode == 0, made.stderr
    added = _certs(tmp_path, "--client", "hmi-hall2", "--commander")
    assert added.returncode == 0, added.stderr
    assert "restart mosquitto" in added.stdout
    pki = tmp_path / "pki"
    for name in ("mosquitto.conf", "mosquitto.acl"):
        written = (pki / name).read_text().replace(str(pki.absolute()), EXAMPLE_ROOT)
        assert written == (EXAMPLE_DIR / name).read_text(), f"regenerate examples/mosquitto/{name}"


def test_the_acl_grants_by_common_name_and_publisher_id(tmp_path: Path) -> None:
    assert _certs(tmp_path, "--publisher-id", "line1", "--client", "viewer").returncode == 0
    pki = tmp_path / "pki"
    blocks = {
        block.split("\nuser ", 1)[1].split("\n", 1)[0]: block
        for block in (pki / "mosquitto.acl").read_text().split("\n\n")
        if "\nuser " in block
    }
    assert set(blocks) == {"line1", "opcua-mqtt client", "viewer"}
    assert "topic write opcua/json/data/line1/#" in blocks["line1"]
    assert "topic read opcua/json/cmd/line1/write" in blocks["line1"]
    assert "topic write opcua/json/reply/line1/#" in blocks["line1"]
    assert "topic write opcua/json/cmd/line1/write" in blocks["opcua-mqtt client"]
    assert "topic read opcua/json/data/#" in blocks["viewer"]
    assert "write" not in blocks["viewer"].split("\nuser viewer\n")[1]
    for stem in ("line1", "opcua-mqtt client", "viewer"):
        pem = pki / {"line1": "bridge-mqtt", "opcua-mqtt client": "mqtt-client"}.get(stem, stem)
        cert = x509.load_pem_x509_certificate(pem.with_suffix(".pem").read_bytes())
        cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
        assert cn == stem
    conf = (pki / "mosquitto.conf").read_text().splitlines()
    assert "listener 8883 127.0.0.1" in conf and "require_certificate true" in conf
    assert f"acl_file {pki.absolute() / 'mosquitto.acl'}" in conf


def test_client_is_added_with_the_existing_ca_and_never_replaced(tmp_path: Path) -> None:
    assert _certs(tmp_path, "--publisher-id", "line1").returncode == 0
    pki = tmp_path / "pki"
    ca_before, acl_before = (pki / "ca.key").read_bytes(), (pki / "mosquitto.acl").read_text()
    added = _certs(tmp_path, "--client", "hmi", "--commander")
    assert added.returncode == 0, added.stderr
    assert (pki / "ca.key").read_bytes() == ca_before
    acl = (pki / "mosquitto.acl").read_text()
    assert (
        acl.startswith(acl_before)
        and "topic write opcua/json/cmd/line1/write" in acl[len(acl_before) :]
    )
    chain = x509.load_pem_x509_certificates((pki / "hmi.pem").read_bytes())
    ca = x509.load_pem_x509_certificate((pki / "ca.pem").read_bytes())
    chain[0].verify_directly_issued_by(ca)
    again = _certs(tmp_path, "--client", "hmi")
    assert again.returncode == 1 and "hmi.key already exists" in again.stderr
    other = _certs(tmp_path, "--client", "x", "--publisher-id", "line2")
    assert other.returncode == 1 and "'line1'" in other.stderr
    bad = _certs(tmp_path, "--client", "ca")
    assert bad.returncode == 2 and "--client" in bad.stderr
    bridge = _certs(tmp_path, "--client", "line1")
    assert bridge.returncode == 1 and "the bridge's name" in bridge.stderr
    moved = _certs(tmp_path, "--client", "y", "--broker-port", "1883")
    assert moved.returncode == 1 and "--broker-port: only for a new PKI" in moved.stderr
    assert not (pki / "x.key").exists() and not (pki / "y.key").exists()


def test_the_broker_key_is_readable_by_the_mosquitto_group_when_run_as_root(
    tmp_path: Path,
) -> None:
    run = _certs(tmp_path)
    assert run.returncode == 0, run.stderr
    key = (tmp_path / "pki" / "broker.key").stat()
    if os.geteuid() != 0:
        assert stat.S_IMODE(key.st_mode) == 0o600
        return
    try:
        gid = grp.getgrnam("mosquitto").gr_gid
    except KeyError:
        assert "no group 'mosquitto'" in run.stderr
        return
    assert (stat.S_IMODE(key.st_mode), key.st_gid) == (0o640, gid)
    # pytest's tmp folders are 0700: certs says the broker's user cannot get there.
    assert "cannot enter" in run.stderr and "--dir" in run.stderr


def test_certs_never_writes_through_a_symbolic_link(tmp_path: Path) -> None:
    """`certs --force` (as root, say) must not overwrite whatever a planted link points to."""
    assert _certs(tmp_path).returncode == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    for name in ("ca.key", "mosquitto.acl", "historian.pem"):
        link = tmp_path / "pki" / name
        link.unlink(missing_ok=True)
        link.symlink_to(victim)
        args = ("--client", "historian") if name == "historian.pem" else ("--force",)
        run = _certs(tmp_path, *args)
        assert run.returncode == 1, run.stdout
        assert run.stderr == (
            f"error: {link} is a symbolic link; certs never writes through one (remove it, or "
            "choose another --dir)\n"
        )
        assert victim.read_text() == "precious\n"
        link.unlink()
        assert _certs(tmp_path, "--force").returncode == 0  # restore the PKI for the next


def test_write_file_refuses_a_link_made_after_any_check(tmp_path: Path) -> None:
    from opcua_mqtt.devpki import SymlinkError, write_file

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / "key").symlink_to(victim)
    for append in (False, True):
        with pytest.raises(SymlinkError, match="is a symbolic link"):
            write_file(tmp_path / "key", b"secret", 0o600, append=append)
    assert victim.read_text() == "precious\n"
