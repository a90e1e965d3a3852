"""How every Kafka client of the project connects: the options built from Settings (one place,
so the worker, topic creation, sources and the simulator all honour the security settings),
and a check at start that turns a refused connection into a message naming the setting.

Why the check: aiokafka logs why a connection failed and then raises only "Unable to bootstrap"
(and Faust's worker retries forever), so a wrong password or CA would read as a hang or an
unreachable broker. The check speaks the protocol once, as the clients will, and says which.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from stream_app.settings import Settings, SettingsError

CHECK_TIMEOUT_S = 10.0  # per bootstrap server, all tried at once: a command fails within this

# Broker error codes (Kafka protocol) the check tells apart.
_UNSUPPORTED_SASL_MECHANISM = 33
_ILLEGAL_SASL_STATE = 34
_SASL_AUTHENTICATION_FAILED = 58


class KafkaAccessError(Exception):
    """The broker cannot be used with these settings; the message says which one to check."""


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """Verifying context (hostname and chain): trusts KAFKA_SSL_CAFILE alone when it is set,
    else the system's CAs; presents KAFKA_SSL_CERTFILE/KEYFILE when they are set."""
    if not settings.kafka_uses_tls:
        return None
    try:
        context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
    except (ssl.SSLError, OSError) as exc:
        raise SettingsError(
            f"KAFKA_SSL_CAFILE holds no usable PEM certificate: {settings.kafka_ssl_cafile!r} ({exc})"
        ) from None
    if settings.kafka_ssl_certfile:
        try:
            context.load_cert_chain(
                settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile, password=_no_key_password
            )
        except (ssl.SSLError, OSError, _EncryptedKey) as exc:
            raise SettingsError(
                "KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE must be a PEM certificate and its"
                f" unencrypted private key: {settings.kafka_ssl_certfile!r},"
                f" {settings.kafka_ssl_keyfile!r} ({exc})"
            ) from None
    return context


class _EncryptedKey(Exception):
    """OpenSSL would otherwise ask for the key's passphrase on the terminal (and wait)."""


def _no_key_password() -> str:
    raise _EncryptedKey("the key is encrypted")


def security_options(settings: Settings) -> dict[str, Any]:
    """The security keyword arguments of AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient."""
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.kafka_uses_sasl:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password.reveal()
    return options


def client_options(settings: Settings) -> dict[str, Any]:
    """Bootstrap servers and security, for any aiokafka client the project opens."""
    return {"bootstrap_servers": settings.kafka_bootstrap, **security_options(settings)}


def faust_broker_options(settings: Settings) -> dict[str, Any]:
    """`broker` and `broker_credentials` for faust.App. Faust's aiokafka driver hands the
    credentials' protocol, mechanism, user, password and context to every consumer and
    producer it opens (credentials_to_aiokafka_auth), topic creation included."""
    import faust

    options: dict[str, Any] = {
        "broker": [f"kafka://{server.strip()}" for server in settings.kafka_bootstrap.split(",")]
    }
    context = ssl_context(settings)
    if settings.kafka_uses_sasl:
        # SASLCredentials chooses SASL_SSL when given a context, SASL_PLAINTEXT without.
        options["broker_credentials"] = faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.reveal(),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    elif context is not None:
        options["broker_credentials"] = faust.SSLCredentials(context)
    return options


def preflight(settings: Settings) -> str | None:
    """check_access for a command about to start: None, or the message to exit with."""
    try:
        asyncio.run(check_access(settings))
    except KafkaAccessError as exc:
        return str(exc)
    return None


async def check_access(settings: Settings, timeout: float = CHECK_TIMEOUT_S) -> None:
    """Connect to the bootstrap servers as the clients will (TLS, SASL, then a metadata
    request); return once one answers, else raise KafkaAccessError saying what to check."""
    servers = [s.strip() for s in settings.kafka_bootstrap.split(",") if s.strip()]
    results = await asyncio.gather(
        *(_probe(settings, server, timeout) for server in servers), return_exceptions=True
    )
    failures: list[tuple[int, str]] = []
    for server, result in zip(servers, results, strict=True):
        if result is None:
            return
        if not isinstance(result, Exception):
            raise result
        failures.append(_explain(settings, server, result, timeout))
    failures.sort(key=lambda f: f[0])  # the most telling first: a refusal beats a silence
    raise KafkaAccessError(failures[0][1])


async def _probe(settings: Settings, server: str, timeout: float) -> None:
    from aiokafka.conn import create_conn
    from aiokafka.protocol.metadata import MetadataRequest

    host, _, port = server.rpartition(":")
    options = security_options(settings)

    async def attempt() -> None:
        conn = await create_conn(
            host.strip("[]"), int(port), request_timeout_ms=int(timeout * 1000), **options
        )
        try:
            await conn.send(MetadataRequest([]))
        except Exception as exc:
            raise _RefusedRequest() from exc
        finally:
            conn.close()

    await asyncio.wait_for(attempt(), timeout)


class _RefusedRequest(Exception):
    """Connected (and through TLS and SASL where asked) but the first request got no answer."""


def _explain(settings: Settings, server: str, exc: Exception, timeout: float) -> tuple[int, str]:
    """(rank, message): what a failed connection says about the settings, lower rank first."""
    from aiokafka.errors import KafkaError

    protocol = settings.kafka_security_protocol
    at = f"Kafka at {server}"
    mismatch = f"is KAFKA_SECURITY_PROTOCOL ({protocol}) right for this listener?"
    code = getattr(exc, "errno", None) if isinstance(exc, KafkaError) else None
    if code == _SASL_AUTHENTICATION_FAILED:
        return 0, (
            f"{at} refused the SASL credentials: check KAFKA_SASL_USERNAME and"
            " KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE), and KAFKA_SASL_MECHANISM"
            f" ({settings.kafka_sasl_mechanism}): SCRAM users have a password per mechanism"
        )
    if code == _UNSUPPORTED_SASL_MECHANISM or type(exc).__name__ == "UnsupportedSaslMechanismError":
        return 0, (
            f"{at} does not offer KAFKA_SASL_MECHANISM {settings.kafka_sasl_mechanism}"
            " on this listener"
        )
    if code == _ILLEGAL_SASL_STATE:
        return 0, f"{at} does not expect SASL on this listener: {mismatch}"
    if isinstance(exc, _RefusedRequest):
        hint = "" if settings.kafka_uses_sasl else " (it may want SASL: SASL_PLAINTEXT or SASL_SSL)"
        return 0, f"{at} accepted the connection but not a request: {mismatch}{hint}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code == 62:  # X509_V_ERR_HOSTNAME_MISMATCH (or IP address mismatch)
            return 0, (
                f"TLS handshake with {server} failed: the broker's certificate is not for that"
                f" host ({exc.verify_message}); KAFKA_BOOTSTRAP must name a host it lists"
            )
        signer = (
            f"KAFKA_SSL_CAFILE ({settings.kafka_ssl_cafile})"
            if settings.kafka_ssl_cafile
            else "a CA this system trusts (set KAFKA_SSL_CAFILE to the cluster's CA)"
        )
        return 0, (
            f"TLS handshake with {server} failed: the broker's certificate is not signed by"
            f" {signer} ({exc.verify_message})"
        )
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        kind = "TLS" if settings.kafka_uses_tls else "Kafka"
        return 1, f"no {kind} answer from {server} within {timeout:g} s: {mismatch}"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or type(exc).__name__
        if "CERTIFICATE_REQUIRED" in reason.upper():
            return (
                0,
                f"{at} asks for a client certificate: set KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE",
            )
        return 1, f"no TLS answer from {server} ({reason}): {mismatch}"
    if isinstance(exc, ConnectionResetError | asyncio.IncompleteReadError | KafkaError):
        if settings.kafka_uses_tls:
            return 1, f"no TLS answer from {server} (the connection closed): {mismatch}"
        return 1, (
            f"{at} closed the connection before answering: {mismatch}"
            " (a TLS listener needs SSL or SASL_SSL)"
        )
    if isinstance(exc, OSError):
        return 2, f"cannot connect to {server} ({exc.strerror or exc}): is KAFKA_BOOTSTRAP right?"
    return 2, f"cannot use {at}: {type(exc).__name__}: {exc}"
