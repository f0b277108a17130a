"""Browse without a server: output formats, filters, option parsing and our certificates."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import socket
import stat
from pathlib import Path

import click
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from opcua_mqtt import devpki
from opcua_mqtt.adapters.opcua import (
    ConnectionOptions,
    filter_nodes,
    normalise_endpoint,
)
from opcua_mqtt.adapters.opcua.certs import (
    CertificateError,
    TrustList,
    client_application_uri,
    load_or_create_client_credentials,
    make_application_certificate,
)
from opcua_mqtt.cli.browse import render
from opcua_mqtt.cli.opcua_options import connection_options_from
from opcua_mqtt.core.address_space import BrowsedNode, BrowseResult, NodeClass
from opcua_mqtt.core.globs import glob_regex

NS = "urn:plant"


def node(path: str, cls: NodeClass = NodeClass.VARIABLE, **kw: object) -> BrowsedNode:
    parts = tuple(path.split("/"))
    defaults: dict[str, object] = {}
    if cls is NodeClass.VARIABLE:
        defaults = {
            "data_type": "i=11",
            "data_type_name": "Double",
            "builtin_type": 11,
            "value_rank": -1,
            "readable": True,
            "writable": False,
        }
    defaults.update(kw)
    return BrowsedNode(
        node_id=f"nsu={NS};s={'.'.join(parts)}",
        node_class=cls,
        browse_name=parts[-1],
        display_name=parts[-1],
        browse_path=parts,
        parent_node_id=f"nsu={NS};s={'.'.join(parts[:-1])}" if len(parts) > 1 else "i=85",
        **defaults,  # type: ignore[arg-type]
    )


def sample() -> BrowseResult:
    nodes = [
        node("Line1", NodeClass.OBJECT),
        node("Line1/Filler", NodeClass.OBJECT, description="the filler"),
        node("Line1/Filler/Speed", writable=True, value={"UaType": 11, "Value": 120.5}),
        node(
            "Line1/Filler/Valves",
            data_type="i=1",
            data_type_name="Boolean",
            builtin_type=1,
            value_rank=1,
            array_dimensions=(4,),
            value={"UaType": 1, "Value": [True, False, True, True]},
        ),
        node("Line1/Filler/Mode", data_type=f"nsu={NS};i=3", data_type_name="Mode", builtin_type=6),
        node(
            "Line1/Secret",
            error="BadUserAccessDenied reading DataType",
            data_type=None,
            data_type_name=None,
            builtin_type=None,
            value_rank=None,
            readable=None,
            writable=None,
        ),
        node("Line2", NodeClass.OBJECT),
        node("Line2/Count", data_type="i=8", data_type_name="Int64", builtin_type=8),
    ]
    return BrowseResult(
        endpoint="opc.tcp://plc:4840",
        server_uri="urn:plc",
        namespaces=["http://opcfoundation.org/UA/", NS],
        start_node="i=85",
        nodes=nodes,
    )


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("Line1/*", "Line1/Filler", True),
        ("Line1/*", "Line1/Filler/Speed", False),
        ("Line1/**", "Line1/Filler/Speed", True),
        ("**/Speed", "Line1/Filler/Speed", True),
        ("**/Speed", "Speed", True),
        ("Line?/Filler", "Line1/Filler", True),
        ("Line?/Filler", "Line12/Filler", False),
        ("Line[12]/*", "Line2/Count", True),
        ("Line[!12]/*", "Line2/Count", False),
        ("Line1/Fill*/S*", "Line1/Filler/Speed", True),
        ("a.b/c", "a.b/c", True),
        ("a.b/c", "axb/c", False),
    ],
)
def test_browse_path_globs(pattern: str, path: str, matches: bool) -> None:
    assert bool(glob_regex(pattern).match(path)) is matches


def test_filters_combine() -> None:
    nodes = sample().nodes
    assert [n.browse_name for n in filter_nodes(nodes, data_types=["double"])] == ["Speed"]
    # the enumeration matches by its own name and by its built-in type
    assert [n.browse_name for n in filter_nodes(nodes, data_types=["Int32"])] == ["Mode"]
    assert [n.browse_name for n in filter_nodes(nodes, data_types=["Mode"])] == ["Mode"]
    objects = filter_nodes(nodes, node_classes=["Object"], path_glob="Line1/**")
    assert [n.browse_name for n in objects] == ["Filler"]


def test_json_and_yaml_read_back() -> None:
    result = sample()
    for fmt, load in (("json", json.loads), ("yaml", yaml.safe_load)):
        doc = load(render(result, fmt))
        assert doc["format"] == "opcua-mqtt-browse/1"
        back = BrowseResult.from_json(doc)
        assert back.nodes == result.nodes
        assert back.namespaces == result.namespaces


def test_csv_has_one_row_per_variable() -> None:
    rows = list(csv.DictReader(io.StringIO(render(sample(), "csv"))))
    assert [r["browse_path"] for r in rows] == [
        "Line1/Filler/Speed",
        "Line1/Filler/Valves",
        "Line1/Filler/Mode",
        "Line1/Secret",
        "Line2/Count",
    ]
    speed, valves, mode, secret, _ = rows
    assert (speed["builtin_type"], speed["writable"], speed["value"]) == ("Double", "true", "120.5")
    assert (valves["value_rank"], valves["array_dimensions"]) == ("1", "4")
    assert valves["value"] == "[true,false,true,true]"
    assert (mode["data_type_name"], mode["builtin_type"]) == ("Mode", "Int32")
    assert secret["error"].startswith("BadUserAccessDenied")


def test_tree_indents_and_names_missing_ancestors() -> None:
    text = render(sample(), "tree")
    assert text.splitlines() == [
        "opc.tcp://plc:4840  (from i=85)",
        "  Line1  [Object]",
        "    Filler  [Object]",
        "      Speed  Double  rw  = 120.5",
        "      Valves  Boolean[4]  r-  = [true,false,true,true]",
        "      Mode  Mode  r-",
        "    Secret  [Variable]  ! BadUserAccessDenied reading DataType",
        "  Line2  [Object]",
        "    Count  Int64  r-",
    ]
    filtered = sample()
    filtered.nodes = filter_nodes(filtered.nodes, node_classes=["Variable"], path_glob="**/S*")
    assert render(filtered, "tree").splitlines()[1:] == [
        "  Line1/",
        "    Filler/",
        "      Speed  Double  rw  = 120.5",
        "    Secret  [Variable]  ! BadUserAccessDenied reading DataType",
    ]


# -- options --------------------------------------------------------------------------------


def params(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "security_policy": "Basic256Sha256",
        "security_mode": None,
        "certificate": "certs/opcua-client.pem",
        "private_key": "certs/opcua-client.key",
        "trust_dir": "certs/trusted-servers",
        "trust_server_cert": False,
        "username": None,
        "password_env": "OPCUA_PASSWORD",
        "password_prompt": False,
        "timeout": 10.0,
    }
    base.update(kw)
    return base


def test_secure_defaults_and_mode_follows_policy() -> None:
    options = connection_options_from("plc1", params())
    assert (options.security_policy, options.security_mode) == ("Basic256Sha256", "SignAndEncrypt")
    assert options.trust_server_cert is False
    none = connection_options_from("plc1", params(security_policy="None"))
    assert none.security_mode == "None"
    with pytest.raises(click.UsageError, match="policy None goes with mode None"):
        connection_options_from("plc1", params(security_policy="None", security_mode="Sign"))
    with pytest.raises(click.UsageError, match=r"only opc\.tcp"):
        connection_options_from("https://plc1", params())


def test_password_from_environment_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLC_PW", "s3cret")
    options = connection_options_from("plc1", params(username="bridge", password_env="PLC_PW"))
    assert options.password == "s3cret"
    assert "s3cret" not in repr(options)
    monkeypatch.delenv("OPCUA_PASSWORD", raising=False)
    with pytest.raises(click.UsageError, match="needs a password"):
        connection_options_from("plc1", params(username="bridge"))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("plc1", "opc.tcp://plc1:4840"),
        ("plc1:4841", "opc.tcp://plc1:4841"),
        ("opc.tcp://plc1/UA/Server", "opc.tcp://plc1:4840/UA/Server"),
        ("opc.tcp://[::1]:4840/x", "opc.tcp://[::1]:4840/x"),
    ],
)
def test_endpoints(given: str, expected: str) -> None:
    assert normalise_endpoint(given) == expected


def test_connection_options_check_themselves() -> None:
    with pytest.raises(ValueError, match="unknown security policy"):
        ConnectionOptions("plc1", security_policy="Basic128Rsa15", security_mode="Sign")
    with pytest.raises(ValueError, match="needs Sign or SignAndEncrypt"):
        ConnectionOptions("plc1", security_policy="Basic256Sha256", security_mode="None")


# -- our certificate and the trust folder ------------------------------------------------------


def test_client_certificate_is_made_once_as_opc_ua_wants_it(tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "c" / "client.pem", tmp_path / "c" / "client.key"
    creds = load_or_create_client_credentials(cert_path, key_path)
    assert creds.generated
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    cert = creds.certificate
    assert isinstance(creds.private_key, rsa.RSAPrivateKey) and creds.private_key.key_size == 2048
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [client_application_uri()]
    assert client_application_uri() == f"urn:opcua-mqtt:client:{socket.gethostname()}"
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.content_commitment
    assert usage.key_encipherment and usage.data_encipherment
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    again = load_or_create_client_credentials(cert_path, key_path)
    assert not again.generated and again.certificate == cert


def test_half_a_pair_is_not_overwritten(tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "client.pem", tmp_path / "client.key"
    load_or_create_client_credentials(cert_path, key_path)
    key_path.unlink()
    with pytest.raises(CertificateError, match="private key"):
        load_or_create_client_credentials(cert_path, key_path)
    assert cert_path.exists()


def test_trust_list_exact_certificates_and_issuing_cas(tmp_path: Path) -> None:
    _, server_cert = make_application_certificate("urn:server", "plc1")
    now = dt.datetime.now(dt.UTC)
    ca = devpki.make_ca("plant CA", now)
    issued = devpki.issue(ca, "plc2", now, server=True, uris=("urn:plc2",))
    stranger = make_application_certificate("urn:other", "plc3")[1]
    trust = TrustList(tmp_path / "trusted")
    assert not trust.is_trusted(server_cert)
    saved = trust.add(server_cert)
    assert saved.suffix == ".der"
    (tmp_path / "trusted" / "ca.pem").write_bytes(ca.cert_pem())
    reloaded = TrustList(tmp_path / "trusted")
    assert reloaded.is_trusted(server_cert)
    assert reloaded.is_trusted(issued.cert)
    assert not reloaded.is_trusted(stranger)
