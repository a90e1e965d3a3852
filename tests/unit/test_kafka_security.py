"""The Kafka security settings: what load_settings accepts and rejects (naming the variable),
the client options built from them (aiokafka and Faust alike), that the password prints
nowhere, and how check_access reads a listener that does not speak Kafka."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from stream_app.kafka_clients import (
    KafkaAccessError,
    check_access,
    client_options,
    faust_broker_options,
    security_options,
)
from stream_app.settings import Secret, Settings, SettingsError, load_settings

PASSWORD = "correct-horse-battery-staple"
THIS = str(Path(__file__))  # a file that exists


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a client certificate it signed with its key, the key encrypted, and a non-PEM file."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
            "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=client",
            "-keyout", str(d / "client.key"), "-out", str(d / "client.csr"))  # fmt: skip
    openssl("x509", "-req", "-in", str(d / "client.csr"), "-CA", str(d / "ca.pem"),
            "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
            "-out", str(d / "client.pem"))  # fmt: skip
    openssl("pkey", "-in", str(d / "client.key"), "-aes256", "-passout", "pass:x",
            "-out", str(d / "client-encrypted.key"))  # fmt: skip
    (d / "not.pem").write_text("not a certificate\n")
    return d


def sasl_ssl(**extra: str) -> dict[str, str]:
    env = {
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "metrics",
        "KAFKA_SASL_PASSWORD": PASSWORD,
    }
    env.update(extra)
    return {k: v for k, v in env.items() if v != "-"}  # "-" removes a variable


def rejected(env: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    message = str(caught.value)
    assert PASSWORD not in message
    return message


def test_plaintext_is_the_default_and_adds_no_credentials() -> None:
    settings = load_settings({})
    assert settings.kafka_security_protocol == "PLAINTEXT"
    assert client_options(settings) == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "PLAINTEXT",
    }
    assert "broker_credentials" not in faust_broker_options(settings)
    assert faust_broker_options(settings)["broker"] == ["kafka://127.0.0.1:9092"]


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
        (sasl_ssl(KAFKA_SASL_MECHANISM="GSSAPI"), "KAFKA_SASL_MECHANISM"),
        (sasl_ssl(KAFKA_SASL_USERNAME="-"), "KAFKA_SASL_USERNAME"),
        (sasl_ssl(KAFKA_SASL_PASSWORD="-"), "KAFKA_SASL_PASSWORD"),
        (sasl_ssl(KAFKA_SASL_PASSWORD_FILE=THIS), "KAFKA_SASL_PASSWORD_FILE"),
        (
            sasl_ssl(KAFKA_SASL_PASSWORD="-", KAFKA_SASL_PASSWORD_FILE="/nonexistent/pw"),
            "KAFKA_SASL_PASSWORD_FILE",
        ),
        ({"KAFKA_SASL_USERNAME": "metrics"}, "KAFKA_SASL_USERNAME"),
        ({"KAFKA_SASL_PASSWORD": PASSWORD}, "KAFKA_SASL_PASSWORD"),
        ({"KAFKA_SSL_CAFILE": THIS}, "KAFKA_SSL_CAFILE"),
        (
            sasl_ssl(KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", KAFKA_SSL_CAFILE=THIS),
            "KAFKA_SSL_CAFILE",
        ),
        (sasl_ssl(KAFKA_SSL_CAFILE="/nonexistent/ca.pem"), "KAFKA_SSL_CAFILE"),
    ],
)
def test_contradictions_and_missing_pieces_stop_at_start_naming_the_variable(
    env: dict[str, str], names: str
) -> None:
    assert names in rejected(env)


def test_files_are_checked_when_loaded(pki: Path) -> None:
    assert "KAFKA_SSL_CAFILE" in rejected(sasl_ssl(KAFKA_SSL_CAFILE=str(pki / "not.pem")))
    for cert, key in (("client.pem", ""), ("", "client.key")):
        env = {"KAFKA_SECURITY_PROTOCOL": "SSL"}
        if cert:
            env["KAFKA_SSL_CERTFILE"] = str(pki / cert)
        if key:
            env["KAFKA_SSL_KEYFILE"] = str(pki / key)
        assert "KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE" in rejected(env)
    # An encrypted key would make OpenSSL ask for its passphrase on the terminal: refused instead.
    message = rejected(
        {
            "KAFKA_SECURITY_PROTOCOL": "SSL",
            "KAFKA_SSL_CERTFILE": str(pki / "client.pem"),
            "KAFKA_SSL_KEYFILE": str(pki / "client-encrypted.key"),
        }
    )
    assert "unencrypted" in message


def test_the_password_file_loses_its_final_line_break(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_text(PASSWORD + "\n")
    settings = load_settings(sasl_ssl(KAFKA_SASL_PASSWORD="-", KAFKA_SASL_PASSWORD_FILE=str(path)))
    assert settings.kafka_sasl_password.reveal() == PASSWORD
    path.write_text("\n")
    assert "empty" in rejected(
        sasl_ssl(KAFKA_SASL_PASSWORD="-", KAFKA_SASL_PASSWORD_FILE=str(path))
    )
    both = sasl_ssl(KAFKA_SASL_PASSWORD_FILE=str(path))
    assert "not both" in rejected(both)


def test_the_password_prints_nowhere(pki: Path) -> None:
    settings = load_settings(sasl_ssl(KAFKA_SSL_CAFILE=str(pki / "ca.pem")))
    credentials = faust_broker_options(settings)["broker_credentials"]
    for shown in (repr(settings), str(settings), repr(settings.kafka_sasl_password),
                  f"{settings.kafka_sasl_password}", repr(credentials)):  # fmt: skip
        assert PASSWORD not in shown
    assert Secret(PASSWORD) == settings.kafka_sasl_password


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_options_for_aiokafka_and_for_faust_agree(pki: Path, mechanism: str) -> None:
    settings = load_settings(
        sasl_ssl(
            KAFKA_BOOTSTRAP="k1:9094,k2:9094",
            KAFKA_SASL_MECHANISM=mechanism.lower(),
            KAFKA_SSL_CAFILE=str(pki / "ca.pem"),
        )
    )
    options = client_options(settings)
    context = options.pop("ssl_context")
    assert options == {
        "bootstrap_servers": "k1:9094,k2:9094",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "metrics",
        "sasl_plain_password": PASSWORD,
    }
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [ca["subject"] for ca in context.get_ca_certs()] == [((("commonName", "test CA"),),)]
    faust_options = faust_broker_options(settings)
    assert faust_options["broker"] == ["kafka://k1:9094", "kafka://k2:9094"]
    # What Faust's aiokafka driver hands each consumer and producer it opens.
    auth = dict(credentials_to_aiokafka_auth(faust_options["broker_credentials"]))
    assert isinstance(auth.pop("ssl_context"), ssl.SSLContext)
    assert auth == {k: v for k, v in options.items() if k != "bootstrap_servers"}


def test_sasl_plaintext_has_no_tls_and_ssl_has_no_sasl(pki: Path) -> None:
    plain = load_settings(sasl_ssl(KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT"))
    assert "ssl_context" not in security_options(plain)
    auth = credentials_to_aiokafka_auth(faust_broker_options(plain)["broker_credentials"])
    assert auth["security_protocol"] == "SASL_PLAINTEXT" and auth["ssl_context"] is None
    tls = load_settings(
        {
            "KAFKA_SECURITY_PROTOCOL": "ssl",
            "KAFKA_SSL_CAFILE": str(pki / "ca.pem"),
            "KAFKA_SSL_CERTFILE": str(pki / "client.pem"),
            "KAFKA_SSL_KEYFILE": str(pki / "client.key"),
        }
    )
    options = security_options(tls)
    assert set(options) == {"security_protocol", "ssl_context"}
    assert options["security_protocol"] == "SSL"
    auth = credentials_to_aiokafka_auth(faust_broker_options(tls)["broker_credentials"])
    assert auth["security_protocol"] == "SSL"


@pytest.fixture
def mute_listener() -> Iterator[tuple[str, list[socket.socket]]]:
    """A TCP port that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    yield f"127.0.0.1:{server.getsockname()[1]}", accepted
    server.close()
    for conn in accepted:
        conn.close()


def access_problem(env: dict[str, str], timeout: float = 10.0) -> str:
    with pytest.raises(KafkaAccessError) as caught:
        asyncio.run(check_access(load_settings(env), timeout=timeout))
    return str(caught.value)


def test_check_access_names_the_setting_for_a_port_that_is_not_kafka(
    mute_listener: tuple[str, list[socket.socket]],
) -> None:
    address, _ = mute_listener
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"  # bound, not listening: refused
    assert "KAFKA_BOOTSTRAP" in access_problem({"KAFKA_BOOTSTRAP": closed})
    silent = access_problem({"KAFKA_BOOTSTRAP": address}, timeout=0.5)
    assert "no Kafka answer" in silent and "KAFKA_SECURITY_PROTOCOL" in silent
    tls = access_problem(
        {"KAFKA_BOOTSTRAP": address, "KAFKA_SECURITY_PROTOCOL": "SSL"}, timeout=0.5
    )
    assert "no TLS answer" in tls and "KAFKA_SECURITY_PROTOCOL" in tls
    # One server of several answering is enough; the message is the most telling one.
    both = access_problem({"KAFKA_BOOTSTRAP": f"{closed},{address}"}, timeout=0.5)
    assert "no Kafka answer" in both


def test_settings_type_keeps_the_password_out_of_its_fields_repr() -> None:
    assert "kafka_sasl_password" not in repr(Settings(kafka_sasl_password=Secret(PASSWORD)))
