"""Secure connections: one Settings gives confluent-kafka and faust the same TLS and SASL, and
secrets (SASL password, ClickHouse DSN, signing key) are never printed.

Certificates are made for each test session with the `openssl` command into a temporary folder;
TLS contexts are checked by a real handshake with a loopback server that requires a client
certificate.
"""

from __future__ import annotations

import logging
import shutil
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Producer
from faust.auth import SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from driftway.io.agents import broker_credentials, make_app
from driftway.io.kafka import client_config
from driftway.settings import KafkaSettings, Settings, SettingsError, load_settings

PASSWORD = "sasl-pw-7f3a9c"
DSN_PASSWORD = "ch-pw-51be20"
SIGNING_KEY = "signing-key-0d4e8b61"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def _leaf(name: str, cn: str, extensions: str, folder: Path) -> tuple[Path, Path]:
    """A key and a certificate for `cn`, signed by the CA in `folder`."""
    (folder / f"{name}.ext").write_text(extensions)
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}",
             cwd=folder)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext",
             cwd=folder)
    return folder / f"{name}.pem", folder / f"{name}.key"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A throwaway CA, a server certificate for localhost and a client certificate."""
    folder = tmp_path_factory.mktemp("certs")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=Driftway test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
    leaf = ("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "authorityKeyIdentifier=keyid\n")
    server_cert, server_key = _leaf(
        "server", "localhost",
        leaf + "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n", folder)
    client_cert, client_key = _leaf(
        "client", "driftway-client", leaf + "extendedKeyUsage=clientAuth\n", folder)
    return Certs(folder / "ca.pem", server_cert, server_key, client_cert, client_key)


def _settings(**kafka: object) -> Settings:
    return Settings(kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1", local_broker=False,
                                        **kafka))  # type: ignore[arg-type]


def _connection(settings: Settings) -> dict[str, object]:
    """The connection settings of client_config (without the logger it may hand librdkafka)."""
    return {k: v for k, v in client_config(settings).items() if k != "logger"}


def _faust_auth(settings: Settings) -> dict[str, object]:
    """What faust hands aiokafka for these settings (faust's own translation)."""
    return credentials_to_aiokafka_auth(broker_credentials(settings))


def _librdkafka_accepts(config: dict[str, object]) -> None:
    """librdkafka checks property names, and loads the TLS files, when a client is created."""
    Producer({**config, "log_level": 0})


def _handshake(context: ssl.SSLContext, certs: Certs, server_hostname: str) -> str:
    """Connect to a loopback TLS server that requires a client certificate signed by the CA;
    returns the common name of the client certificate the server saw."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs.ca))
    server_context.load_cert_chain(str(certs.server_cert), str(certs.server_key))
    server_context.verify_mode = ssl.CERT_REQUIRED
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            with server_context.wrap_socket(conn, server_side=True) as tls:
                peer = tls.getpeercert() or {}
                subject = dict(item for rdn in peer.get("subject", ()) for item in rdn)
                tls.sendall(str(subject.get("commonName", "")).encode())
        except (OSError, ssl.SSLError):
            pass  # the client refused the server: the test sees it on its side

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        with socket.create_connection(listener.getsockname(), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname=server_hostname) as tls:
            return tls.recv(256).decode()
    finally:
        server.join(10)
        listener.close()


# --- one Settings, the same connection for confluent-kafka and faust ------------------------


def test_plaintext_has_no_credentials():
    settings = _settings()
    assert _connection(settings) == {"bootstrap.servers": "127.0.0.1:1",
                                     "security.protocol": "PLAINTEXT"}
    assert broker_credentials(settings) is None
    assert _faust_auth(settings) == {"security_protocol": "PLAINTEXT"}


def test_ssl_gives_both_clients_the_same_files(certs: Certs, tmp_path: Path):
    settings = _settings(security_protocol="SSL", ssl_cafile=certs.ca,
                         ssl_certfile=certs.client_cert, ssl_keyfile=certs.client_key)
    config = client_config(settings)
    assert _connection(settings) == {
        "bootstrap.servers": "127.0.0.1:1", "security.protocol": "SSL",
        "ssl.ca.location": str(certs.ca), "ssl.certificate.location": str(certs.client_cert),
        "ssl.key.location": str(certs.client_key),
        "ssl.endpoint.identification.algorithm": "https"}
    _librdkafka_accepts(config)

    credentials = broker_credentials(settings)
    assert isinstance(credentials, SSLCredentials)
    auth = _faust_auth(settings)
    assert auth["security_protocol"] == config["security.protocol"]
    context = auth["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    # The context trusts exactly the configured CA and presents the configured client certificate.
    assert [dict(i for rdn in c["subject"] for i in rdn)["commonName"]
            for c in context.get_ca_certs()] == ["Driftway test CA"]
    assert _handshake(context, certs, "localhost") == "driftway-client"
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        _handshake(context, certs, "kafka.elsewhere")

    app = make_app(settings.model_copy(update={"state_dir": tmp_path}), "alerts")
    assert isinstance(app.conf.broker_credentials, SSLCredentials)


def test_ssl_hostname_check_can_be_turned_off_for_both_clients(certs: Certs):
    settings = _settings(security_protocol="SSL", ssl_cafile=certs.ca,
                         ssl_certfile=certs.client_cert, ssl_keyfile=certs.client_key,
                         ssl_check_hostname=False)
    assert client_config(settings)["ssl.endpoint.identification.algorithm"] == "none"
    context = _faust_auth(settings)["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and not context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED  # the CA still verifies the broker
    assert _handshake(context, certs, "kafka.elsewhere") == "driftway-client"


@pytest.mark.parametrize(("protocol", "mechanism"), [
    ("SASL_SSL", "SCRAM-SHA-512"),
    ("SASL_SSL", "SCRAM-SHA-256"),
    ("SASL_PLAINTEXT", "PLAIN"),
])
def test_sasl_gives_both_clients_the_same_user(certs: Certs, protocol: str, mechanism: str):
    tls = {"ssl_cafile": certs.ca} if protocol == "SASL_SSL" else {}
    settings = _settings(security_protocol=protocol, sasl_mechanism=mechanism,
                         sasl_username="driftway", sasl_password=PASSWORD, **tls)
    config = client_config(settings)
    assert config["security.protocol"] == protocol
    assert config["sasl.mechanisms"] == mechanism
    assert config["sasl.username"] == "driftway" and config["sasl.password"] == PASSWORD
    assert ("ssl.ca.location" in config) == (protocol == "SASL_SSL")
    _librdkafka_accepts(config)

    assert isinstance(broker_credentials(settings), SASLCredentials)
    auth = _faust_auth(settings)
    assert auth["security_protocol"] == protocol
    assert auth["sasl_mechanism"] == mechanism
    assert auth["sasl_plain_username"] == "driftway" and auth["sasl_plain_password"] == PASSWORD
    if protocol == "SASL_SSL":
        context = auth["ssl_context"]
        assert isinstance(context, ssl.SSLContext) and context.check_hostname
        assert config["ssl.endpoint.identification.algorithm"] == "https"
    else:
        assert auth["ssl_context"] is None


def test_security_settings_come_from_the_environment(certs: Certs,
                                                     monkeypatch: pytest.MonkeyPatch):
    for name, value in {
        "DRIFTWAY_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "DRIFTWAY_KAFKA__SASL_MECHANISM": "SCRAM-SHA-256",
        "DRIFTWAY_KAFKA__SASL_USERNAME": "driftway",
        "DRIFTWAY_KAFKA__SASL_PASSWORD": PASSWORD,
        "DRIFTWAY_KAFKA__SSL_CAFILE": str(certs.ca),
        "DRIFTWAY_KAFKA__SSL_CHECK_HOSTNAME": "false",
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    config = client_config(settings)
    assert config["sasl.password"] == PASSWORD
    assert config["ssl.ca.location"] == str(certs.ca)
    assert config["ssl.endpoint.identification.algorithm"] == "none"
    assert _faust_auth(settings)["sasl_plain_password"] == PASSWORD


# --- bad combinations fail at start-up, naming what to fix ----------------------------------


@pytest.mark.parametrize(("env", "fix"), [
    ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_USERNAME": "u", "SASL_PASSWORD": PASSWORD},
     "DRIFTWAY_KAFKA__SASL_MECHANISM"),
    ({"SECURITY_PROTOCOL": "SASL_PLAINTEXT", "SASL_MECHANISM": "PLAIN", "SASL_USERNAME": "u"},
     "DRIFTWAY_KAFKA__SASL_PASSWORD"),
    ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "GSSAPI", "SASL_USERNAME": "u",
      "SASL_PASSWORD": PASSWORD}, "DRIFTWAY_KAFKA__SASL_MECHANISM"),
    ({"SASL_MECHANISM": "PLAIN", "SASL_USERNAME": "u", "SASL_PASSWORD": PASSWORD},
     "DRIFTWAY_KAFKA__SECURITY_PROTOCOL"),
    ({"SECURITY_PROTOCOL": "SSL", "SSL_CAFILE": "/no/such/ca.pem"},
     "DRIFTWAY_KAFKA__SSL_CAFILE"),
    ({"SECURITY_PROTOCOL": "SASL_PLAINTEXT", "SASL_MECHANISM": "PLAIN", "SASL_USERNAME": "u",
      "SASL_PASSWORD": PASSWORD, "SSL_CAFILE": "{ca}"}, "DRIFTWAY_KAFKA__SECURITY_PROTOCOL"),
    ({"SECURITY_PROTOCOL": "SSL", "SSL_CERTFILE": "{cert}"}, "DRIFTWAY_KAFKA__SSL_KEYFILE"),
    ({"SECURITY_PROTOCOL": "SSL", "SSL_CERTFILE": "{cert}", "SSL_KEYFILE": "/no/key.pem"},
     "DRIFTWAY_KAFKA__SSL_KEYFILE"),
])
def test_bad_security_settings_fail_with_the_variable_to_fix(
        certs: Certs, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], fix: str):
    for name, value in env.items():
        monkeypatch.setenv(f"DRIFTWAY_KAFKA__{name}",
                           value.format(ca=certs.ca, cert=certs.client_cert))
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert fix in str(err.value)
    assert PASSWORD not in str(err.value)


# --- secrets are never printed ----------------------------------------------------------------


def test_secrets_never_appear_in_settings_output(certs: Certs, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture):
    settings = Settings(
        state_dir=tmp_path, clickhouse_dsn=f"https://driftway:{DSN_PASSWORD}@ch:8443",
        signing_key=SIGNING_KEY,
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1", local_broker=False,
                            security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                            sasl_username="driftway", sasl_password=PASSWORD,
                            ssl_cafile=certs.ca))
    caplog.set_level(logging.DEBUG)
    credentials = broker_credentials(settings)
    app = make_app(settings, "scoring")
    shown = "\n".join([
        repr(settings), str(settings), repr(settings.kafka), str(settings.model_dump()),
        str(settings.model_dump(mode="json")), settings.model_dump_json(), repr(credentials),
        repr(app), repr(app.conf.broker_credentials), caplog.text])
    for secret in (PASSWORD, DSN_PASSWORD, SIGNING_KEY):
        assert secret not in shown
    # ...while the clients still get them.
    assert client_config(settings)["sasl.password"] == PASSWORD
    assert DSN_PASSWORD in settings.clickhouse_dsn_resolved


def test_a_clickhouse_connection_error_does_not_show_the_password(tmp_path: Path):
    from driftway.io.clickhouse import connect

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(state_dir=tmp_path,
                        clickhouse_dsn=f"http://driftway:{DSN_PASSWORD}@127.0.0.1:{port}")
    with pytest.raises(Exception) as err:
        connect(settings)
    assert f"127.0.0.1:{port}" in str(err.value)
    assert DSN_PASSWORD not in str(err.value) and DSN_PASSWORD not in repr(err.value)


def test_every_security_setting_has_an_environment_name():
    from driftway.settings import setting_env_names

    names = setting_env_names()
    for field in ("SECURITY_PROTOCOL", "SASL_MECHANISM", "SASL_USERNAME", "SASL_PASSWORD",
                  "SSL_CAFILE", "SSL_CERTFILE", "SSL_KEYFILE", "SSL_CHECK_HOSTNAME"):
        assert f"DRIFTWAY_KAFKA__{field}" in names


def test_a_settings_error_never_echoes_the_dsn_or_a_password() -> None:
    from pydantic import ValidationError

    from driftway.settings import Settings

    try:
        Settings(clickhouse_dsn="ftp://user:hunter2-secret@host", signing_key="x")
    except ValidationError as exc:
        assert "hunter2-secret" not in str(exc)
    else:
        raise AssertionError("a bad DSN must be refused")
