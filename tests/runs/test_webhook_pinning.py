"""An attempt connects to the address it checked, resolving the name once, while the Host
header, TLS's SNI and the certificate check keep the name (no DNS rebinding between the
check and the connection)."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from standardwebhooks import Webhook

from runs import webhooks
from runs.webhook_delivery import attempt
from runs.webhook_models import WebhookDelivery, WebhookEndpoint

NAME = "hooks.example"


def _cert(subject: str, issuer_key: Any, issuer: x509.Name | None, key: Any, ca: bool, names: list[str]) -> Any:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """An HTTPS server on 127.0.0.1 whose certificate names `hooks.example`, and a client
    context trusting its CA. Records each request's SNI name and headers."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test CA", ca_key, None, ca_key, True, [])
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = _cert(NAME, ca_key, ca.subject, key, False, [NAME])
    (tmp_path / "leaf.pem").write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    seen: dict[str, Any] = {"sni": [], "requests": []}
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "leaf.pem")
    server_ctx.sni_callback = lambda sock, name, ctx: seen["sni"].append(name)  # type: ignore[assignment]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["content-length"]))
            seen["requests"].append(({k.lower(): v for k, v in self.headers.items()}, body, self.path))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok " * 500)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client_ctx = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    yield {"port": server.server_address[1], "client_ctx": client_ctx, "seen": seen}
    server.shutdown()
    server.server_close()


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """`hooks.example` resolves to 127.0.0.1 (counted); other names as usual."""
    calls: list[str] = []
    real = socket.getaddrinfo

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == NAME:
            calls.append(host)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise socket.gaierror(f"no network in tests: {host}")
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return calls


def _delivery(url: str) -> tuple[WebhookDelivery, str]:
    secret = webhooks.new_secret()
    endpoint = WebhookEndpoint(url=url, events=["succeeded"], secret=secret)
    payload = {"type": "run.succeeded", "timestamp": "t", "data": {"run_id": "r"}}
    return WebhookDelivery(endpoint=endpoint, message_id="msg_test", payload=payload, event="succeeded"), secret


async def test_https_goes_to_the_checked_address_with_the_name_in_host_sni_and_certificate(
    tls: dict[str, Any], resolver: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WFDASH_WEBHOOK_ALLOW_PRIVATE", "1")
    delivery, secret = _delivery(f"https://{NAME}:{tls['port']}/in?a=b")
    async with httpx.AsyncClient(verify=tls["client_ctx"], trust_env=False, follow_redirects=False) as client:
        code, error, excerpt = await attempt(client, delivery)
    assert (code, error) == (200, "") and excerpt.startswith("ok ok") and len(excerpt) <= 300
    assert resolver == [NAME]  # resolved once, by the check; httpx connected to the address
    assert tls["seen"]["sni"] == [NAME]
    ((headers, body, path),) = tls["seen"]["requests"]
    assert headers["host"] == f"{NAME}:{tls['port']}" and path == "/in?a=b"
    assert Webhook(secret).verify(body, headers) == delivery.payload


async def test_a_certificate_for_another_name_is_refused(
    tls: dict[str, Any], resolver: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WFDASH_WEBHOOK_ALLOW_PRIVATE", "1")
    # 127.0.0.1 is the server's address, but its certificate names hooks.example only.
    delivery, _ = _delivery(f"https://127.0.0.1:{tls['port']}/in")
    async with httpx.AsyncClient(verify=tls["client_ctx"], trust_env=False) as client:
        code, error, _ = await attempt(client, delivery)
    assert code is None and "ConnectError" in error and tls["seen"]["requests"] == []


async def test_a_name_resolving_to_a_private_address_is_refused_before_connecting(
    tls: dict[str, Any], resolver: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WFDASH_WEBHOOK_ALLOW_PRIVATE", raising=False)
    delivery, _ = _delivery(f"https://{NAME}:{tls['port']}/in")
    async with httpx.AsyncClient(verify=tls["client_ctx"], trust_env=False) as client:
        code, error, _ = await attempt(client, delivery)
    assert code is None and error.startswith("refused:") and "127.0.0.1 is a loopback address" in error
    assert tls["seen"]["requests"] == [] and tls["seen"]["sni"] == []


def test_ipv4_mapped_and_scoped_addresses_are_judged_by_what_they_reach() -> None:
    assert webhooks.refused_reason("::ffff:10.0.0.1") is not None
    assert webhooks.refused_reason("fe80::1%eth0") is not None
    assert ipaddress.ip_address("93.184.215.14").is_global and webhooks.refused_reason("93.184.215.14") is None
