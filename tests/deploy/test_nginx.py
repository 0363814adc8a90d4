"""docs/deploy/nginx-civicrealtime.conf in front of the real daemon, with Debian's nginx.

The nginx configuration under test is derived from the documented site: its `map`, its
`upstream` (pointed at the test daemon's port) and its `location /realtime/` block are
copied verbatim into a minimal nginx.conf listening on plain HTTP on loopback, with the
pid file, logs and temporary paths under tmp_path. The daemon runs as a subprocess, as
systemd would run it (`python -m civicrealtime --config ...`), with JWT authentication.

`tests/deploy/install-system-tools.sh` installs nginx when run as root with apt-get; without
/usr/sbin/nginx these tests are skipped.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pycrdt import Doc, Text
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    open_websocket_url,
    wrap_client_stream,
)

from civicrealtime.auth.minting import mint_token
from civicrealtime.config import RealtimeConfig
from civicrealtime.protocol import messages
from civicrealtime.protocol.control import CONTROL_SUBPROTOCOL

NGINX = Path("/usr/sbin/nginx")
DOCS = Path(__file__).resolve().parents[2] / "docs"
SITE = DOCS / "deploy" / "nginx-civicrealtime.conf"
OPERATIONS = DOCS / "operations.md"
SECRET = secrets.token_hex(24)  # 48 bytes: the daemon refuses HMAC secrets under 32
STARTUP_TIMEOUT = 10.0
STEP_TIMEOUT = 5.0

needs_nginx = pytest.mark.skipif(
    not os.access(NGINX, os.X_OK),
    reason=f"{NGINX} not found: run tests/deploy/install-system-tools.sh as root "
    "(installs Debian's nginx) to run the reverse-proxy tests",
)


# -- the documented site --------------------------------------------------------------------


def block(text: str, header: str) -> str:
    """The block that starts with `header` (up to its `{`), braces matched, comments kept."""
    match = re.search(r"^[ \t]*" + re.escape(header) + r"\s*\{", text, re.MULTILINE)
    assert match is not None, f"no `{header} {{` block in {SITE.name}"
    depth = 0
    for index in range(match.end() - 1, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[match.start() : index + 1]
    raise AssertionError(f"unbalanced braces after `{header}` in {SITE.name}")


def directive_values(location: str, name: str) -> list[str]:
    return [
        m.group(1).strip()
        for m in re.finditer(r"^\s*" + re.escape(name) + r"\s+([^;]*);", location, re.MULTILINE)
    ]


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m|h)?", value)
    assert match is not None, f"not an nginx time: {value!r}"
    factor = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[match.group(2)]
    return int(match.group(1)) * factor


def test_documented_site_has_the_proxy_directives() -> None:
    site = SITE.read_text(encoding="utf-8")
    mapping = block(site, "map $http_upgrade $civicrealtime_connection_upgrade")
    assert re.search(r"default\s+upgrade;", mapping)
    assert re.search(r"''\s+close;", mapping)
    location = block(site, "location /realtime/")
    headers = directive_values(location, "proxy_set_header")
    assert "Upgrade $http_upgrade" in headers
    assert "Connection $civicrealtime_connection_upgrade" in headers
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in headers
    assert directive_values(location, "proxy_http_version") == ["1.1"]
    assert directive_values(location, "proxy_buffering") == ["off"]
    # Above the daemon's heartbeat, so nginx never cuts a live, idle connection.
    heartbeat = RealtimeConfig().connection_cleanup.check_interval
    (read_timeout,) = directive_values(location, "proxy_read_timeout")
    assert seconds(read_timeout) > heartbeat
    # TLS terminates at the proxy.
    assert re.search(r"^\s*listen 443 ssl;", site, re.MULTILINE)
    assert directive_values(site, "ssl_certificate")
    assert directive_values(site, "ssl_certificate_key")
    # Of the operations port, only /health is proxied; /metrics, /ready, /admin are not.
    ops_targets = re.findall(r"proxy_pass\s+http://127\.0\.0\.1:3002([^;]*);", site)
    assert ops_targets == ["/health"]
    for private in ("/metrics", "/ready", "/admin"):
        assert not re.search(r"location[^{]*" + re.escape(private), site), private


# -- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}:\n{read(log)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            time.sleep(0.05)
        else:
            return
    pytest.fail(f"{what} did not listen on {port} within {STARTUP_TIMEOUT} s:\n{read(log)}")


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def stop(proc: subprocess.Popen[bytes], sig: signal.Signals, within: float) -> int:
    """Send `sig`, wait `within` seconds, then kill. Returns the exit code (idempotent)."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    return proc.returncode


@attrs.define
class Daemon:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    # The operations port and its admin token, when this build has an `http:` section.
    http_port: int | None = None
    admin_token: str | None = None

    def need_http(self) -> tuple[int, str]:
        if self.http_port is None or self.admin_token is None:
            pytest.skip("this build has no operations port (`http:` with port, admin_token_file)")
        return self.http_port, self.admin_token


def http_fields() -> set[str]:
    """The keys of the `http:` section of this build's configuration (none: no section)."""
    fields = attrs.fields_dict(attrs.resolve_types(RealtimeConfig))
    if "http" not in fields or not attrs.has(fields["http"].type):
        return set()
    return set(attrs.fields_dict(attrs.resolve_types(fields["http"].type)))


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    port = free_port()
    config: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "shutdown_timeout": 2,
        "rate_limiting": {"connections_per_ip": 2, "trusted_proxies": ["127.0.0.1"]},
        "auth": {"mode": "jwt"},
    }
    http_port = admin_token = None
    if {"host", "port", "admin_token_file"} <= http_fields():
        # Off the default 127.0.0.1:3002, so parallel runs and a local daemon don't collide.
        http_port = free_port()
        admin_token = secrets.token_hex(16)
        (tmp_path / "admin-token").write_text(admin_token + "\n", encoding="utf-8")
        config["http"] = {
            "host": "127.0.0.1",
            "port": http_port,
            "admin_token_file": str(tmp_path / "admin-token"),
        }
    config_path = tmp_path / "realtime.yml"
    config_path.write_text(yaml.safe_dump({"realtime": config}), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIVICREALTIME_")}
    env["CIVICREALTIME_JWT_SECRET"] = SECRET
    log = tmp_path / "daemon.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "civicrealtime", "--config", str(config_path)],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, proc, log, "the daemon")
        if http_port is not None:
            wait_for_port(http_port, proc, log, "the daemon's operations port")
        yield Daemon(proc=proc, port=port, log=log, http_port=http_port, admin_token=admin_token)
    finally:
        stop(proc, signal.SIGTERM, within=10)


@attrs.define
class Nginx:
    proc: subprocess.Popen[bytes]
    port: int
    error_log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, room: str) -> str:
        return f"ws://127.0.0.1:{self.port}/realtime/records/{room}"

    def stop(self) -> int:
        """Graceful stop (SIGQUIT, as `nginx -s quit`), then the exit code."""
        return stop(self.proc, signal.SIGQUIT, within=5)


def nginx_conf(tmp_path: Path, listen_port: int, daemon: Daemon) -> str:
    """The documented site's map, upstream and locations, on plain HTTP, in tmp_path."""
    site = SITE.read_text(encoding="utf-8")
    upstream, count = re.subn(
        r"server\s+127\.0\.0\.1:3001;",
        f"server 127.0.0.1:{daemon.port};",
        block(site, "upstream civicrealtime"),
    )
    assert count == 1, "the documented upstream should be `server 127.0.0.1:3001;`"
    health = block(site, "location = /health")
    if daemon.http_port is not None:
        health = health.replace("127.0.0.1:3002", f"127.0.0.1:{daemon.http_port}")
    temp = tmp_path / "nginx-temp"
    return f"""
daemon off;
worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/nginx-error.log notice;
events {{ worker_connections 64; }}
http {{
    access_log {tmp_path}/nginx-access.log;
    client_body_temp_path {temp}/client_body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;

    # From {SITE.name}:
{block(site, "map $http_upgrade $civicrealtime_connection_upgrade")}

{upstream}

    server {{
        listen 127.0.0.1:{listen_port};
        server_name localhost;
{block(site, "location /realtime/")}
{health}
{block(site, "location /")}
    }}
}}
"""


def start_nginx(tmp_path: Path, conf_text: str) -> subprocess.Popen[bytes]:
    (tmp_path / "nginx-temp").mkdir(exist_ok=True)
    conf = tmp_path / "nginx.conf"
    conf.write_text(conf_text, encoding="utf-8")
    # -e: nginx opens its compiled-in error log before reading the configuration.
    return subprocess.Popen(
        [str(NGINX), "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "nginx-error.log")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture
def nginx(tmp_path: Path, daemon: Daemon) -> Iterator[Nginx]:
    port = free_port()
    proc = start_nginx(tmp_path, nginx_conf(tmp_path, port, daemon))
    error_log = tmp_path / "nginx-error.log"
    try:
        wait_for_port(port, proc, error_log, "nginx")
        yield Nginx(proc=proc, port=port, error_log=error_log)
    finally:
        stop(proc, signal.SIGQUIT, within=5)


# -- a y-websocket client -------------------------------------------------------------------


def token(user: str) -> str:
    return mint_token(SECRET.encode(), user=user, role="editor")


def opted_in(token: str) -> list[str]:
    """The subprotocols of a client that asks for the control frames these tests read."""
    return [f"auth.{token}", CONTROL_SUBPROTOCOL]


async def handshake(ws: WebSocketConnection, room: str) -> None:
    """The documented join: connection.ack (text), then sync step 1 and step 2 (binary)."""
    with trio.fail_after(STEP_TIMEOUT):
        ack = await ws.get_message()
        assert isinstance(ack, str), ack
        frame = json.loads(ack)
        assert frame["type"] == "control"
        assert frame["event"] == "connection.ack"
        assert frame["roomId"] == f"records:{room}"
        step1 = await ws.get_message()
        step2 = await ws.get_message()
    assert isinstance(step1, bytes)
    assert isinstance(step2, bytes)
    assert isinstance(messages.decode(step1), messages.SyncStep1)
    assert isinstance(messages.decode(step2), messages.SyncStep2)


async def next_update(ws: WebSocketConnection) -> bytes:
    with trio.fail_after(STEP_TIMEOUT):
        while True:
            frame = await ws.get_message()
            if isinstance(frame, bytes):
                message = messages.decode(frame)
                if isinstance(message, messages.SyncUpdate):
                    return message.update


async def connect_from(
    nursery: trio.Nursery,
    *,
    source: str,
    port: int,
    room: str,
    user: str,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> WebSocketConnection:
    """A WebSocket to nginx from a chosen loopback source address (127.0.0.0/8 is ours)."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    await sock.bind((source, 0))
    with trio.fail_after(STEP_TIMEOUT):
        await sock.connect(("127.0.0.1", port))
        return await wrap_client_stream(
            nursery,
            trio.SocketStream(sock),
            f"127.0.0.1:{port}",
            f"/realtime/records/{room}",
            subprotocols=opted_in(token(user)),
            extra_headers=extra_headers,
        )


# -- through the proxy ----------------------------------------------------------------------


@needs_nginx
async def test_two_editors_sync_through_nginx(nginx: Nginx) -> None:
    room = "proxied"
    with trio.fail_after(15):
        async with (
            open_websocket_url(nginx.url(room), subprotocols=opted_in(token("alice"))) as alice,
            open_websocket_url(nginx.url(room), subprotocols=opted_in(token("bob"))) as bob,
        ):
            # The 101 went through nginx, selecting the control subprotocol they offered.
            assert alice.subprotocol == CONTROL_SUBPROTOCOL
            await handshake(alice, room)
            await handshake(bob, room)

            doc = Doc()
            doc.get("body", type=Text).insert(0, "Minutes of the council meeting")
            await alice.send_message(messages.encode_sync_update(doc.get_update()))

            replica = Doc()
            replica.apply_update(await next_update(bob))
            assert str(replica.get("body", type=Text)) == "Minutes of the council meeting"


@needs_nginx
async def test_per_ip_limit_counts_the_client_not_the_proxy(nginx: Nginx, daemon: Daemon) -> None:
    """connections_per_ip is 2 and nginx (127.0.0.1) is a trusted proxy: the daemon counts
    the address nginx puts in X-Forwarded-For, so each client address has its own quota."""
    room = "limits"
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            first = await connect_from(
                nursery, source="127.0.0.2", port=nginx.port, room=room, user="u1"
            )
            second = await connect_from(
                nursery, source="127.0.0.2", port=nginx.port, room=room, user="u2"
            )
            await handshake(first, room)
            await handshake(second, room)

            # A spoofed X-Forwarded-For changes nothing: nginx appends the real address and
            # the daemon reads the header from the right.
            third = await connect_from(
                nursery,
                source="127.0.0.2",
                port=nginx.port,
                room=room,
                user="u3",
                extra_headers=[(b"X-Forwarded-For", b"10.9.9.9")],
            )
            with trio.fail_after(STEP_TIMEOUT):
                error = await third.get_message()
                assert isinstance(error, str)
                assert json.loads(error)["error"]["code"] == "CONNECTION_LIMIT_EXCEEDED"
                with pytest.raises(ConnectionClosed) as closed:
                    await third.get_message()
            assert closed.value.reason.code == 4029
            assert closed.value.reason.reason is not None
            assert json.loads(closed.value.reason.reason) == {
                "code": "CONNECTION_LIMIT_EXCEEDED",
                "reason": "connections_per_ip",
            }

            # Through the same nginx, another client address still gets in.
            other = await connect_from(
                nursery, source="127.0.0.3", port=nginx.port, room=room, user="u4"
            )
            await handshake(other, room)

            for ws in (first, second, other):
                await ws.aclose()

    log = read(daemon.log)
    assert "127.0.0.2" in log
    assert "127.0.0.3" in log


@needs_nginx
async def test_sigterm_closes_4503_and_exits_0(nginx: Nginx, daemon: Daemon) -> None:
    room = "shutdown"
    with trio.fail_after(15):
        async with open_websocket_url(nginx.url(room), subprotocols=opted_in(token("carol"))) as ws:
            await handshake(ws, room)
            daemon.proc.send_signal(signal.SIGTERM)
            with trio.fail_after(STEP_TIMEOUT + 5), pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.get_message()
            # Relayed by nginx unchanged: the editor shows "Reconnecting…" and reconnects.
            assert closed.value.reason.code == 4503
        code = await trio.to_thread.run_sync(lambda: daemon.proc.wait(timeout=10))
    log = read(daemon.log)
    assert code == 0, log
    assert "Traceback" not in log
    assert nginx.stop() == 0, read(nginx.error_log)


# -- the operations port ---------------------------------------------------------------------


@needs_nginx
def test_only_health_of_the_operations_port_goes_through_nginx(
    nginx: Nginx, daemon: Daemon
) -> None:
    http_port, _ = daemon.need_http()
    health = httpx.get(nginx.base + "/health", timeout=STEP_TIMEOUT)
    assert health.status_code == 200, health.text
    assert health.json()["status"] in {"ok", "degraded"}
    for private in ("/metrics", "/ready", "/admin/rooms", "/demo/"):
        response = httpx.get(nginx.base + private, timeout=STEP_TIMEOUT)
        assert response.status_code == 404, private  # nginx's own 404: never proxied
    # On loopback, where the doc points monitoring, they answer.
    local = f"http://127.0.0.1:{http_port}"
    assert httpx.get(local + "/ready", timeout=STEP_TIMEOUT).status_code == 200
    assert httpx.get(local + "/metrics", timeout=STEP_TIMEOUT).status_code == 200


def documented_metrics() -> set[str]:
    """Metric names in docs/operations.md's metrics table, as exposition families."""
    text = OPERATIONS.read_text(encoding="utf-8")
    start = text.index("### Metrics")
    end = text.index("\n### ", start + 1)
    names = re.findall(r"^\| `(civicrealtime_\w+)", text[start:end], re.MULTILINE)
    return {name.removesuffix("_total") for name in names}


def test_operations_doc_lists_every_exported_metric(daemon: Daemon) -> None:
    http_port, _ = daemon.need_http()
    exposition = httpx.get(f"http://127.0.0.1:{http_port}/metrics", timeout=STEP_TIMEOUT).text
    exported = {
        name.removesuffix("_total")  # counters' TYPE lines carry _total in some versions
        for name in re.findall(r"^# TYPE (civicrealtime_\w+) ", exposition, re.MULTILINE)
    }
    documented = documented_metrics()
    assert exported - documented == set(), "exported but not in docs/operations.md"
    # Store metrics appear only with a store, cluster metrics only in a cluster (checked by
    # tests/cluster/test_nodes.py); everything else must be exported.
    optional = ("civicrealtime_store_", "civicrealtime_cluster_")
    missing = {m for m in documented - exported if not m.startswith(optional)}
    assert missing == set(), "in docs/operations.md but not exported"


@needs_nginx
async def test_admin_revoke_closes_the_users_connections(nginx: Nginx, daemon: Daemon) -> None:
    """docs/operations.md, "Revoking a user": the curl command's request, verbatim."""
    http_port, admin_token = daemon.need_http()
    room = "revoked"
    alice = token("alice")
    with trio.fail_after(15):
        async with open_websocket_url(nginx.url(room), subprotocols=opted_in(alice)) as ws:
            await handshake(ws, room)
            async with httpx.AsyncClient(timeout=STEP_TIMEOUT) as client:
                response = await client.post(
                    f"http://127.0.0.1:{http_port}/admin/revoke",
                    headers={"Authorization": f"Bearer {admin_token}"},
                    content=b'{"user_id":"alice","reason":"left the city"}',
                )
            assert response.status_code == 200, response.text
            answer = response.json()
            assert (answer["revoked"], answer["connections_closed"]) == (True, 1)
            assert "persisted" in answer
            frames: list[str | bytes] = []
            with trio.fail_after(STEP_TIMEOUT), pytest.raises(ConnectionClosed) as closed:
                while True:
                    frames.append(await ws.get_message())
            assert closed.value.reason.code == 4001
            assert "SESSION_REVOKED" in (closed.value.reason.reason or "")
            assert any(isinstance(f, str) and "session.revoked" in f for f in frames)
        # The same token is refused from now on.
        async with open_websocket_url(nginx.url(room), subprotocols=opted_in(alice)) as ws:
            with trio.fail_after(STEP_TIMEOUT), pytest.raises(ConnectionClosed) as refused:
                while True:
                    await ws.get_message()
            assert refused.value.reason.code == 4001
        # Without the admin token, nothing happens.
        async with httpx.AsyncClient(timeout=STEP_TIMEOUT) as client:
            anonymous = await client.post(
                f"http://127.0.0.1:{http_port}/admin/revoke", content=b'{"user_id":"bob"}'
            )
        assert anonymous.status_code == 401


# -- the whole documented site, TLS included ------------------------------------------------


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "realtime.example.org")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path = tmp_path / "fullchain.pem"
    key_path = tmp_path / "privkey.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@needs_nginx
def test_documented_site_passes_nginx_t(tmp_path: Path) -> None:
    """The whole site file, TLS server included, with a throwaway certificate in place of
    the placeholders (`nginx -t` loads certificates but binds no port)."""
    cert, key = self_signed(tmp_path)
    site = SITE.read_text(encoding="utf-8")
    site = re.sub(r"(ssl_certificate\s+)[^;]+;", rf"\g<1>{cert};", site)
    site = re.sub(r"(ssl_certificate_key\s+)[^;]+;", rf"\g<1>{key};", site)
    site_path = tmp_path / "civicrealtime.site.conf"
    site_path.write_text(site, encoding="utf-8")
    temp = tmp_path / "nginx-temp"
    temp.mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"""
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/nginx-error.log;
events {{ }}
http {{
    access_log off;
    client_body_temp_path {temp}/client_body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {site_path};
}}
""",
        encoding="utf-8",
    )
    result = subprocess.run(
        [str(NGINX), "-t", "-p", str(tmp_path), "-c", str(conf), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "[warn]" not in result.stderr, result.stderr
