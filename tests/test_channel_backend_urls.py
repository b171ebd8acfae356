"""Channel back-end URLs (defect 10): member passwords and points travel there, so the URL is https outside
the local stage, never a private, loopback, link-local or otherwise non-public address (refused when set,
and again when a call resolves the host), and a redirect from the channel is a failed call, never followed.

The local stage allows http and loopback (the fakes live there); tests of a deployed stage run
deployed-shape API Gateway events through the real handler with the stage's ``IS_LOCAL`` off.
"""
from __future__ import annotations

import json
import socket
import ssl
import threading
from datetime import datetime, timedelta, timezone

import pytest
import requests

from api_gateway import event, invoke
from chalicelib.channels.models import Channel
from chalicelib.core import config
from fake_channel import REDIRECT, FakeChannel
from helpers import assert_error, channel, channel_body, error_of, ok, uid

OPS_ARN = "arn:aws:iam::123456789012:user/ops-alice"


@pytest.fixture
def fake():
    server = FakeChannel().start()
    yield server
    server.stop()


@pytest.mark.parametrize("url", [
    "http://10.0.0.5/api", "http://172.16.0.1/", "http://192.168.1.1:8080/", "http://100.64.0.1/",
    "http://169.254.169.254/latest/meta-data", "http://0.0.0.0:8080/", "http://224.0.0.1/",
    "http://10.1/", "http://0x0a000001/",                                    # short and hex forms of 10.0.0.1
    "http://[fd00::1]/", "http://[fe80::1]/", "http://[::ffff:10.0.0.1]/", "http://[::ffff:169.254.169.254]/",
])
def test_private_and_reserved_addresses_are_refused_when_set(ops, url):
    assert_error(ops.post("/ops/channels", json=channel_body(api_base_url=url)), 422, "private_api_base_url",
                 "api_base_url")
    view, _ = channel(ops, api_base_url="https://partner.example.com/api")
    assert_error(ops.patch(f"/ops/channels/{view['code']}", json={"api_base_url": url}), 422,
                 "private_api_base_url", "api_base_url")
    assert ok(ops.get(f"/ops/channels/{view['code']}"))["api_base_url"] == "https://partner.example.com/api"


@pytest.mark.parametrize("url", ["https://user:secret@partner.example.com/api", "https://partner.example.com/?x=1"])
def test_credentials_or_a_query_in_the_base_url_are_refused(ops, url):
    assert_error(ops.post("/ops/channels", json=channel_body(api_base_url=url)), 422, "invalid_api_base_url",
                 "api_base_url")


# --- a deployed stage: https only, loopback refused too ------------------------------------------------

@pytest.fixture
def deployed(monkeypatch):
    """This process answers as a deployed stage would (the local ops token no longer works; IAM does)."""
    monkeypatch.setattr(config, "IS_LOCAL", False)


def ops_event(method: str, path: str, resource: str, params: dict, body: dict) -> dict:
    return event(method, path, resource, params, headers={"Content-Type": ["application/json"]},
                 body=json.dumps(body).encode(), identity={"userArn": OPS_ARN, "caller": "AIDAEXAMPLE"})


@pytest.mark.parametrize("url, code", [
    ("http://partner.example.com/api", "insecure_api_base_url"),
    ("https://127.0.0.1:8443/api", "private_api_base_url"),
    ("https://[::1]/api", "private_api_base_url"),
])
def test_a_deployed_stage_requires_https_to_a_public_address(system, deployed, url, code):
    answer = invoke(system, ops_event("POST", "/ops/channels", "/ops/channels", {},
                                      channel_body(api_base_url=url)))
    assert (answer.status_code, error_of(answer)["code"]) == (422, code), answer.text


def test_a_deployed_stage_accepts_https_and_refuses_an_edit_to_http(system, deployed):
    body = channel_body(api_base_url="https://partner.example.com/api")
    answer = invoke(system, ops_event("POST", "/ops/channels", "/ops/channels", {}, body))
    assert answer.status_code == 201, answer.text
    code = body["code"]
    answer = invoke(system, ops_event("PATCH", f"/ops/channels/{code}", "/ops/channels/{code}", {"code": code},
                                      {"api_base_url": "http://partner.example.com/api"}))
    assert (answer.status_code, error_of(answer)["code"]) == (422, "insecure_api_base_url")
    assert Channel.get(code).api_base_url == "https://partner.example.com/api"


# --- at call time: the host is resolved and checked before anything is sent -----------------------------

def code_entry(system, code: str, one_time: str) -> requests.Response:
    return requests.get(f"{system.base_url}/entry/{code}", params={"code": one_time}, allow_redirects=False,
                        timeout=30)


def test_a_stored_private_address_is_refused_at_call_time(system, ops):
    """A URL stored before the rule (or written behind the API) is still never called."""
    view, _ = channel(ops, entry_mode="code", api_base_url="https://partner.example.com/api")
    Channel(view["code"]).update(actions=[Channel.api_base_url.set("http://10.255.255.1:81/api")])
    # refused before any connection attempt: a call to that address would have ended in channel_api_timeout
    assert_error(code_entry(system, view["code"], "one-time"), 502, "channel_api_address_refused")


def test_a_host_that_resolves_to_loopback_is_refused_outside_the_local_stage(system, ops, fake, deployed):
    """``localhost`` passes the set-time check (it is a name); resolving it at call time finds 127.0.0.1."""
    port = fake.url.rsplit(":", 1)[1]
    body = channel_body(entry_mode="code", api_base_url=f"https://localhost:{port}")
    answer = invoke(system, ops_event("POST", "/ops/channels", "/ops/channels", {}, body))
    assert answer.status_code == 201, answer.text
    code = body["code"]
    fake.secret = answer.json()["secret"]
    fake.member("one-time", uid("EXT-"))
    answer = invoke(system, event("GET", f"/entry/{code}", "/entry/{code}", {"code": code},
                                  query={"code": ["one-time"]}))
    assert (answer.status_code, error_of(answer)["code"]) == (502, "channel_api_address_refused")
    assert fake.calls == []


def test_the_local_stage_calls_a_loopback_name(system, ops, fake):
    port = fake.url.rsplit(":", 1)[1]
    view, secret = channel(ops, entry_mode="code", api_base_url=f"http://localhost:{port}")
    fake.secret = secret
    fake.member("one-time", uid("EXT-"))
    assert code_entry(system, view["code"], "one-time").status_code == 302
    assert [c.signature_ok for c in fake.calls] == [True]


def test_a_redirect_from_the_channel_is_a_failed_call_never_followed(system, ops, fake):
    """A member's password or one-time code must reach only the registered back end."""
    elsewhere = FakeChannel().start()
    try:
        view, secret = channel(ops, entry_mode="code", api_base_url=fake.url)
        fake.secret = elsewhere.secret = secret
        fake.mode, fake.redirect_to = REDIRECT, f"{elsewhere.url}/member/exchange"
        elsewhere.member("one-time", uid("EXT-"))
        assert_error(code_entry(system, view["code"], "one-time"), 502, "channel_api_redirected")
        assert [c.answered for c in fake.calls] == [302]     # asked once, not retried
        assert elsewhere.calls == []                         # and never followed
    finally:
        elsewhere.stop()


# --- the call connects to exactly the address that was checked (DNS rebinding) ---------------------------

REAL_GETADDRINFO = socket.getaddrinfo


class Resolver:
    """Stands in for DNS for the names given (``answers``: name → the addresses answered, one per lookup,
    the last repeated); any other name or literal goes to the real resolver. Records each lookup."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def __call__(self, host, port, *args, **kwargs):
        if host not in self.answers:
            return REAL_GETADDRINFO(host, port, *args, **kwargs)
        self.asked.append(host)
        queue = self.answers[host]
        address = queue.pop(0) if len(queue) > 1 else queue[0]
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, int(port)))]


class Decoy:
    """A listener that only counts the connections it accepts and closes them: the address a rebound
    name would lead to."""

    def __init__(self, address: str, port: int) -> None:
        self.accepted = 0
        self._sock = socket.create_server((address, port))
        self._sock.settimeout(0.2)
        self._open = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self._open:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._open = False
        self._sock.close()


def test_a_name_rebound_after_the_check_cannot_move_the_call(system, ops, fake, monkeypatch):
    """The check resolves ``rebind.test`` to the channel's (allowed) address; every later lookup answers
    another address, where a decoy listens (on the local stage loopback is the allowed address, so a second
    loopback address plays the private one). The call still reaches only the checked address, carrying
    the name in ``Host``, and the name is looked up once."""
    port = int(fake.url.rsplit(":", 1)[1])
    decoy = Decoy("127.0.0.2", port)
    resolver = Resolver({"rebind.test": ["127.0.0.1", "127.0.0.2"]})
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    try:
        view, fake.secret = channel(ops, entry_mode="code", api_base_url=f"http://rebind.test:{port}/")
        fake.member("one-time", uid("EXT-"))
        assert code_entry(system, view["code"], "one-time").status_code == 302
    finally:
        decoy.close()
    assert [(c.signature_ok, c.headers["host"]) for c in fake.calls] == [(True, f"rebind.test:{port}")]
    assert decoy.accepted == 0
    assert resolver.asked == ["rebind.test"]


def tls_files(tmp_path, name: str) -> tuple[str, ssl.SSLContext]:
    """A test CA (its PEM path, to trust) and a server context holding a certificate for ``name`` it signed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def certificate(subject: str, key, issuer: str, signer, ca: bool) -> x509.Certificate:
        now = datetime.now(timezone.utc)
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(hours=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert = certificate("Test CA", ca_key, "Test CA", ca_key, ca=True)
    server_cert = certificate(name, server_key, "Test CA", ca_key, ca=False)
    ca_path, chain_path, key_path = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    chain_path.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain_path, key_path)
    return str(ca_path), context


def test_https_to_the_pinned_address_names_and_verifies_the_host(system, ops, tmp_path, monkeypatch):
    """Connecting to the checked address keeps TLS about the name: SNI carries it and the certificate
    is verified for it, so a host whose certificate names another host is still refused."""
    ca, context = tls_files(tmp_path, "partner.test")
    sni: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: sni.append(name)
    server = FakeChannel()
    server.tls = context
    server.start()
    try:
        port = int(server.url.rsplit(":", 1)[1])
        monkeypatch.setattr(socket, "getaddrinfo", Resolver({"partner.test": ["127.0.0.1"],
                                                             "impostor.test": ["127.0.0.1"]}))
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca)   # requests trusts the test CA (and only it) for these calls
        view, server.secret = channel(ops, entry_mode="code", api_base_url=f"https://partner.test:{port}")
        server.member("one-time", uid("EXT-"))
        assert code_entry(system, view["code"], "one-time").status_code == 302
        assert sni == ["partner.test"]
        assert [(c.signature_ok, c.headers["host"]) for c in server.calls] == [(True, f"partner.test:{port}")]

        other, server.secret = channel(ops, entry_mode="code", api_base_url=f"https://impostor.test:{port}")
        server.member("two-time", uid("EXT-"))
        assert_error(code_entry(system, other["code"], "two-time"), 502, "channel_api_unavailable")
        assert len(server.calls) == 1                   # the handshake failed: nothing was sent
    finally:
        server.stop()
