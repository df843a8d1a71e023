"""Network by policy: the proxy that is a run's only way out, and the rule it applies.

A run with network allowed lives in its own network namespace (only its own loopback).
Inside it, ``netrelay.serve`` listens on ``127.0.0.1:3128`` and relays every connection to
the run's ``ProxyServer`` (a UNIX socket outside the sandbox); the run's environment gets
``PROXY_ENV`` so HTTP clients use it. The proxy resolves names itself, checks every
address against the ``Policy`` and connects only to an allowed one, by address (no second
lookup, so no DNS rebinding).

``Policy``: the outside world is allowed; the host's own network is not: loopback,
unspecified, link-local (cloud metadata at 169.254.169.254), private ranges (RFC 1918,
100.64/10 carrier-grade NAT, fc00::/7), multicast, reserved and other non-public ranges,
their IPv4-mapped / NAT64 / 6to4 IPv6 forms, and the server's own addresses, unless an
entry of ``RUN_NETWORK_ALLOW`` lets them through. See docs/network.md.
"""

from __future__ import annotations

import ipaddress
import os
import re
import selectors
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .netrelay import DEFAULT_HOST, DEFAULT_PORT, Pipe

__all__ = ["PROXY_ENV", "PROXY_URL", "Policy", "ProxyServer", "ProxyStats"]

PROXY_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
# The environment a run with network gets: its HTTP clients go through the relay.
PROXY_ENV = {
    "HTTP_PROXY": PROXY_URL,
    "HTTPS_PROXY": PROXY_URL,
    "http_proxy": PROXY_URL,
    "https_proxy": PROXY_URL,
    "NO_PROXY": "localhost,127.0.0.1,::1",
}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_LOOPBACK = "a loopback address"
_UNSPECIFIED = "an unspecified address"
_LINK_LOCAL = "a link-local address (cloud metadata services live there)"
_PRIVATE = "a private address"
_MULTICAST = "a multicast address"
_RESERVED = "a reserved address"
_NOT_PUBLIC = "not a public address"
_HOST = "one of the server's own addresses"

# Named ranges first (the same answer on every Python version), then ipaddress's flags.
_RULES: list[tuple[IPNetwork, str]] = [
    (ipaddress.ip_network(net), what)
    for net, what in [
        ("127.0.0.0/8", _LOOPBACK),
        ("0.0.0.0/8", _UNSPECIFIED),  # "this network": 0.0.0.0 reaches the host itself
        ("169.254.0.0/16", _LINK_LOCAL),
        ("10.0.0.0/8", _PRIVATE),
        ("172.16.0.0/12", _PRIVATE),
        ("192.168.0.0/16", _PRIVATE),
        ("100.64.0.0/10", "a private address (carrier-grade NAT)"),
        ("224.0.0.0/4", _MULTICAST),
        ("255.255.255.255/32", "a broadcast address"),
        ("240.0.0.0/4", _RESERVED),
        ("::1/128", _LOOPBACK),
        ("::/128", _UNSPECIFIED),
        ("fe80::/10", _LINK_LOCAL),
        ("fc00::/7", "a private address (unique local)"),
        ("fec0::/10", "a private address (site-local)"),
        ("ff00::/8", _MULTICAST),
    ]
]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_REASON_TAIL = "runs may not reach the server's own network (RUN_NETWORK_ALLOW)"
_HOSTNAME = re.compile(r"(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_-]{1,63})*")


def _normalize(address: str | IPAddress) -> IPAddress:
    """The address as an ``ipaddress`` object; IPv4-mapped IPv6 becomes plain IPv4."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
    return ip


def _classify(ip: IPAddress) -> str | None:
    """What makes ``ip`` part of someone's own network (a phrase), or None if public."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = None
        if ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        elif ip.sixtofour is not None:
            embedded = ip.sixtofour
        if embedded is not None:
            what = _classify(embedded)
            return f"{what} (embedded {embedded})" if what else None
    for network, what in _RULES:
        if ip.version == network.version and ip in network:
            return what
    if ip.is_loopback:
        return _LOOPBACK
    if ip.is_unspecified:
        return _UNSPECIFIED
    if ip.is_link_local:
        return _LINK_LOCAL
    if ip.is_multicast:
        return _MULTICAST
    if ip.is_reserved:
        return _RESERVED
    if ip.is_private or not ip.is_global:  # documentation, benchmarking, ... ranges
        return _NOT_PUBLIC
    return None


def is_host_address(ip: IPAddress) -> bool:
    """True if ``ip`` is assigned to one of this machine's interfaces (in the server's
    network namespace). Sends nothing: a socket is bound to the address and closed."""
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
    except OSError:
        return False  # no such family here, so not one of ours
    try:
        sock.bind((str(ip), 0))
    except OSError:
        return False
    finally:
        sock.close()
    return True


def _parse_port(text: str, entry: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{entry!r}: the port must be a number from 1 to 65535")
    return int(text)


@dataclass(frozen=True)
class _Rule:
    network: IPNetwork | None  # an address range, or
    name: str | None  # a host name as requested
    port: int | None  # None: every port

    def matches(self, ip: IPAddress, port: int, host: str | None) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return ip.version == self.network.version and ip in self.network
        return host is not None and host == self.name


class Policy:
    """Decides which address and port a run may connect to.

    Allowed: public addresses, on every port. Denied: the host's own network (see the
    module docstring) and the server's own addresses (``deny_host_addresses``), unless an
    ``allow`` entry matches. Entries: ``CIDR`` or address (every port), ``CIDR:port`` /
    ``address:port`` (IPv6 in brackets: ``[fd00::/8]:443``), ``name`` / ``name:port`` (a host
    name as the run asks for it, e.g. ``db.internal:5432``: whatever it resolves to).
    IPv4-mapped IPv6 addresses are judged (and matched) as their IPv4 address.
    """

    def __init__(self, allow: Iterable[str] = (), *, deny_host_addresses: bool = True) -> None:
        """Raises ``ValueError`` naming the first entry of ``allow`` that is not valid."""
        self.rules = tuple(self._parse(entry) for entry in allow if entry.strip())
        self.deny_host_addresses = deny_host_addresses

    @classmethod
    def from_settings(cls) -> Policy:
        """The policy of ``settings.RUN_NETWORK_ALLOW``; ``ImproperlyConfigured`` if invalid."""
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured

        try:
            return cls(getattr(settings, "RUN_NETWORK_ALLOW", []) or [])
        except ValueError as exc:
            raise ImproperlyConfigured(f"RUN_NETWORK_ALLOW: {exc}")

    @staticmethod
    def _parse(entry: str) -> _Rule:
        text = entry.strip()
        port: int | None = None
        if text.startswith("["):
            end = text.find("]")
            if end < 0:
                raise ValueError(f"{entry!r}: missing ']'")
            host, rest = text[1:end], text[end + 1 :]
            if rest:
                if not rest.startswith(":"):
                    raise ValueError(f"{entry!r}: expected ':port' after ']'")
                port = _parse_port(rest[1:], entry)
        elif text.count(":") == 1:
            host, _, port_text = text.partition(":")
            port = _parse_port(port_text, entry)
        else:
            host = text
        try:
            return _Rule(ipaddress.ip_network(host, strict=False), None, port)
        except ValueError:
            pass
        name = host.lower().rstrip(".")
        if not _HOSTNAME.fullmatch(name) or name.replace(".", "").isdigit() or ":" in host:
            raise ValueError(f"{entry!r} is neither an address range (CIDR) nor a host name")
        return _Rule(None, name, port)

    def check(self, address: str | IPAddress, port: int, host: str | None = None) -> str | None:
        """None when a run may connect to ``address``:``port`` (``host``: the name the run
        asked for, if any); otherwise why not, e.g. ``"127.0.0.1 is a loopback address"``.
        Pure decision: sends nothing (the own-address test binds a socket, see
        ``is_host_address``). Raises ``ValueError`` if ``address`` is not an IP address."""
        ip = _normalize(address)
        name = host.lower().rstrip(".") if host else None
        if any(rule.matches(ip, port, name) for rule in self.rules):
            return None
        what = _classify(ip)
        if what is None and self.deny_host_addresses and is_host_address(ip):
            what = _HOST
        if what is None:
            return None
        shown = str(address) if str(address) == str(ip) else f"{address} ({ip})"
        return f"{shown} is {what}"

    def allows(self, address: str | IPAddress, port: int, host: str | None = None) -> bool:
        """``check`` as a yes/no."""
        return self.check(address, port, host) is None


# --- The proxy ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProxyStats:
    """Counters of one proxy (one run). ``connections``: requests answered in total;
    ``tunnels`` / ``requests``: CONNECT tunnels / plain HTTP requests relayed; ``denied``:
    refused by the policy (403); ``failed``: bad requests, unknown hosts, unreachable
    servers (4xx/5xx other than 403 and 503); ``rejected``: over the connection limit
    (503); ``bytes_out``: sent by the run, ``bytes_in``: received by it."""

    connections: int = 0
    tunnels: int = 0
    requests: int = 0
    denied: int = 0
    failed: int = 0
    rejected: int = 0
    bytes_out: int = 0
    bytes_in: int = 0

    def summary(self) -> str:
        """One line for the run's log, e.g. ``network: 3 connections (1 denied), ...``."""
        notes = [
            f"{n} {label}"
            for n, label in [
                (self.denied, "denied"),
                (self.failed, "failed"),
                (self.rejected, "over the limit"),
            ]
            if n
        ]
        extra = f" ({', '.join(notes)})" if notes else ""
        return (
            f"network: {self.connections} connection{'s' if self.connections != 1 else ''}"
            f"{extra}, {_size(self.bytes_out)} sent, {_size(self.bytes_in)} received"
        )


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB"):
        if n < 1000:
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n:.1f} GB"


class _Refusal(Exception):
    """An answer other than the relay: status and one line of text."""

    def __init__(self, status: int, text: str, counter: str = "failed") -> None:
        super().__init__(text)
        self.status, self.text, self.counter = status, text, counter


_STATUS = {
    400: "Bad Request",
    403: "Forbidden",
    408: "Request Timeout",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_HEAD_MAX = 64 * 1024
_HOP_BY_HOP = {
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
}
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_MAX_EVENTS = 50

Resolver = Callable[[str, int], Sequence[tuple]]


def _answer_bytes(status: int, text: str) -> bytes:
    body = (text + "\n").encode("utf-8", "replace")
    head = (
        f"HTTP/1.1 {status} {_STATUS.get(status, 'Error')}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _end_of_head(buf: bytes | bytearray) -> int:
    """Index just past the blank line ending an HTTP head, or -1."""
    ends = [i + len(sep) for sep in (b"\r\n\r\n", b"\n\n") if (i := buf.find(sep)) >= 0]
    return min(ends) if ends else -1


def _head_lines(head: bytes) -> list[str]:
    """The lines of an HTTP head (latin-1, CR LF or LF; only LF ends a line)."""
    return [line.removesuffix("\r") for line in head.decode("latin-1").split("\n")]


def _split_authority(authority: str, default_port: int | None) -> tuple[str, int]:
    """``host:port`` / ``[v6]:port`` / ``host`` (with a default port) -> (host, port)."""
    port_text = ""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise _Refusal(400, f"scriptorium: bad address {authority!r}")
        host, rest = authority[1:end], authority[end + 1 :]
        if rest and not rest.startswith(":"):
            raise _Refusal(400, f"scriptorium: bad address {authority!r}")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _Refusal(400, f"scriptorium: bad IPv6 address {host!r}")
    else:
        if authority.count(":") > 1:
            raise _Refusal(400, f"scriptorium: bad address {authority!r} (IPv6 needs [brackets])")
        host, _, port_text = authority.partition(":")
        host = host.lower().rstrip(".")
        if not _HOSTNAME.fullmatch(host):
            raise _Refusal(400, f"scriptorium: bad host name {host!r}")
    if not port_text:
        if default_port is None:
            raise _Refusal(400, f"scriptorium: CONNECT needs host:port, got {authority!r}")
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _Refusal(400, f"scriptorium: bad port in {authority!r}")
    return host, int(port_text)


class _ResponseHead:
    """Rewrites the response of a plain HTTP request as it streams: the final (non-1xx)
    head gets ``Connection: close`` so the client never reuses the connection for another
    host; everything else passes unchanged."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._done = False

    def feed(self, data: bytes) -> bytes:
        if self._done:
            return data
        self._buf += data
        out = bytearray()
        while not self._done:
            end = _end_of_head(self._buf)
            if end < 0:
                if len(self._buf) > _HEAD_MAX:  # not HTTP as we know it: pass it on
                    self._done = True
                    out += self._buf
                    self._buf.clear()
                break
            head, self._buf = bytes(self._buf[:end]), self._buf[end:]
            lines = _head_lines(head)
            status = lines[0].split(" ", 2) if lines else []
            informational = len(status) > 1 and status[1].startswith("1")
            if informational:
                out += head
                continue
            kept = [
                ln
                for ln in lines[1:]
                if ln
                and ln.split(":", 1)[0].strip().lower()
                not in ("connection", "keep-alive", "proxy-connection")
            ]
            out += "\r\n".join(
                [lines[0] if lines else "", *kept, "Connection: close", "", ""]
            ).encode("latin-1")
            self._done = True
        if self._done:
            out += self._buf
            self._buf.clear()
        return bytes(out)

    def flush(self) -> bytes:
        rest, self._buf = bytes(self._buf), bytearray()
        self._done = True
        return rest


class ProxyServer:
    """A forward HTTP proxy on a UNIX socket, for one run, that applies a ``Policy``.

    Speaks ``CONNECT host:port`` (tunnels: HTTPS or any TCP) and absolute-form plain HTTP
    (``GET http://host[:port]/path``: sent on in origin form with ``Connection: close``).
    Names are resolved here; every address is checked and only an allowed one is
    connected to, by address. Answers: ``403`` denied by the policy, ``400`` bad request,
    ``502`` unknown host / connection failed, ``504`` connect timeout, ``503`` more than
    ``max_connections`` at once, ``408`` no complete request head within
    ``header_timeout``; each with one line of plain text saying why. A relayed connection
    with no traffic either way for ``idle_timeout`` seconds is closed.

    ``on_event(line)`` (optional; called from the proxy's threads, one call at a time) gets
    one line per refusal, at most 50 per proxy. ``resolve(host, port)`` replaces
    ``socket.getaddrinfo`` (tests). The socket file gets ``mode``: keep its folder
    private to the run, or widen the mode for a sandbox user that is not the server's.
    """

    def __init__(
        self,
        socket_path: str | os.PathLike[str],
        policy: Policy,
        *,
        max_connections: int = 64,
        connect_timeout: float = 10.0,
        idle_timeout: float = 120.0,
        header_timeout: float = 30.0,
        mode: int = 0o600,
        resolve: Resolver | None = None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.socket_path = os.fspath(socket_path)
        self.policy = policy
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.header_timeout = header_timeout
        self.mode = mode
        self._resolve = resolve or self._getaddrinfo
        self._on_event = on_event
        self._events = 0
        self._event_lock = threading.Lock()
        self._lock = threading.Lock()
        self._counts = {name: 0 for name in ProxyStats.__dataclass_fields__}
        self._active: set[threading.Thread] = set()
        self._live_socks: set[socket.socket] = set()
        self._live_pipes: set[Pipe] = set()
        self._listener: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None
        self._closing = False

    # --- life cycle ------------------------------------------------------------------------

    def start(self) -> ProxyServer:
        """Binds the socket (replacing a stale socket file), starts serving; returns self."""
        try:
            if stat.S_ISSOCK(os.lstat(self.socket_path).st_mode):
                os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(self.socket_path)
            os.chmod(self.socket_path, self.mode)
            listener.listen(max(128, self.max_connections * 2))
            listener.setblocking(False)
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        self._thread = threading.Thread(target=self._serve, name="scriptorium-proxy", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stops accepting, ends every open connection, waits up to ``timeout`` seconds for
        the proxy's threads, removes the socket file. Idempotent."""
        self._closing = True
        if self._thread is None:  # never started
            self._wake_r.close()
            self._wake_w.close()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        with self._lock:
            live = list(self._live_socks)
        for sock in live:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            threads = list(self._active)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._listener is not None:
            try:
                os.unlink(self.socket_path)
            except OSError:
                pass
            self._listener = None

    def __enter__(self) -> ProxyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> ProxyStats:
        """The counters so far (bytes include connections still open)."""
        with self._lock:
            counts = dict(self._counts)
            for pipe in self._live_pipes:
                counts["bytes_out"] += pipe.counts[0]
                counts["bytes_in"] += pipe.counts[1]
        return ProxyStats(**counts)

    @property
    def active_connections(self) -> int:
        """Connections being handled now."""
        with self._lock:
            return len(self._active)

    # --- accepting -------------------------------------------------------------------------

    def _serve(self) -> None:
        listener = self._listener
        assert listener is not None
        selector = selectors.DefaultSelector()
        selector.register(listener, selectors.EVENT_READ, "accept")
        selector.register(self._wake_r, selectors.EVENT_READ, None)
        try:
            while not self._closing:
                for key, _ in selector.select(timeout=1.0):
                    if key.data == "accept":
                        self._accept(listener)
        finally:
            selector.close()
            for sock in (listener, self._wake_r, self._wake_w):
                sock.close()

    def _accept(self, listener: socket.socket) -> None:
        try:
            conn, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            time.sleep(0.1)  # e.g. out of descriptors; the connection waits in the queue
            return
        with self._lock:
            busy = len(self._active) >= self.max_connections
            if not busy:
                thread = threading.Thread(
                    target=self._handle, args=(conn,), name="scriptorium-proxy-conn", daemon=True
                )
                self._active.add(thread)
        if busy:
            self._count("connections", "rejected")
            text = (
                f"scriptorium: too many connections at once through the network proxy "
                f"(at most {self.max_connections} per run)"
            )
            self._event(text)
            _refuse_now(conn, 503, text)
            return
        try:
            thread.start()
        except RuntimeError:  # cannot start a thread: refuse like a full proxy
            with self._lock:
                self._active.discard(thread)
            _refuse_now(conn, 503, "scriptorium: the network proxy is out of threads")

    # --- one connection --------------------------------------------------------------------

    def _handle(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        self._track(client)
        try:
            try:
                request = self._read_request(client)
                if request is None:
                    return
                method, host, port, head, rest = request
                upstream = self._open(method, host, port)
                self._track(upstream)
            except _Refusal as refusal:
                self._count("connections", refusal.counter)
                self._event(refusal.text)
                try:
                    client.settimeout(5)
                    client.sendall(_answer_bytes(refusal.status, refusal.text))
                    client.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            self._count("connections", "tunnels" if method == "CONNECT" else "requests")
            if method == "CONNECT":
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                pipe = Pipe(client, upstream)
            else:
                pipe = Pipe(client, upstream, (None, _ResponseHead()))
                pipe.bufs[0].extend(head)  # the rewritten request head goes first
            if rest:
                pipe.add(0, rest)
            self._pump(pipe)
        except OSError:
            pass
        except Exception as exc:  # a bug here must not take the proxy down
            self._count("failed")
            self._event(f"scriptorium: network proxy error: {exc!r}")
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    self._untrack(sock)
                    sock.close()
            with self._lock:
                self._active.discard(threading.current_thread())

    def _read_request(self, client: socket.socket) -> tuple[str, str, int, bytes, bytes] | None:
        """Reads and checks the request head: (method, host, port, head to send on (plain
        HTTP only), bytes after the head); None if the client left without a request."""
        client.settimeout(self.header_timeout)
        deadline = time.monotonic() + self.header_timeout
        buf = bytearray()
        while (end := _end_of_head(buf)) < 0:
            _check_first_line(buf)
            if len(buf) > _HEAD_MAX:
                raise _Refusal(400, "scriptorium: request head too large")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Refusal(408, "scriptorium: no complete request in time")
            client.settimeout(remaining)
            try:
                data = client.recv(65536)
            except TimeoutError:
                raise _Refusal(408, "scriptorium: no complete request in time")
            except OSError:
                return None
            if not data:
                if buf.strip():
                    raise _Refusal(400, "scriptorium: incomplete request")
                return None
            buf += data
        _check_first_line(buf)
        head, rest = bytes(buf[:end]), bytes(buf[end:])
        lines = _head_lines(head)
        while lines and not lines[0]:  # tolerated blank lines before the request
            lines.pop(0)
        parts = lines[0].split(" ") if lines else []
        if (
            len(parts) != 3
            or not _TOKEN.fullmatch(parts[0].encode())
            or parts[2] not in ("HTTP/1.0", "HTTP/1.1")
        ):
            shown = lines[0][:100] if lines else ""
            raise _Refusal(400, f"scriptorium: not a valid HTTP request line: {shown!r}")
        method, target, version = parts
        if method == "CONNECT":
            host, port = _split_authority(target, None)
            return method, host, port, b"", rest
        if not target[:7].lower() == "http://":
            if target[:8].lower() == "https://":
                raise _Refusal(400, "scriptorium: use CONNECT for https:// through this proxy")
            raise _Refusal(
                400,
                "scriptorium: this is an HTTP proxy; send absolute-form requests "
                f"(http://host/path) or CONNECT, not {target[:100]!r}",
            )
        after = target[7:]
        cut = min((i for i in (after.find(c) for c in "/?#") if i >= 0), default=len(after))
        authority, path = after[:cut], after[cut:]
        if "@" in authority:
            authority = authority.rsplit("@", 1)[1]
        host, port = _split_authority(authority, 80)
        path = path.split("#", 1)[0]
        if not path.startswith("/"):
            path = "/" + path
        headers = self._forwarded_headers(lines[1:], authority)
        out = "\r\n".join([f"{method} {path} {version}", *headers, "Connection: close", "", ""])
        return method, host, port, out.encode("latin-1"), rest

    @staticmethod
    def _forwarded_headers(lines: list[str], authority: str) -> list[str]:
        """The client's header lines minus hop-by-hop ones; a Host header if missing."""
        named_in_connection: set[str] = set()
        parsed: list[tuple[str, str]] = []
        for line in lines:
            if not line:
                continue
            if line[0] in " \t":
                raise _Refusal(400, "scriptorium: folded header lines are not supported")
            name, sep, value = line.partition(":")
            if not sep or not _TOKEN.fullmatch(name.encode()):
                raise _Refusal(400, f"scriptorium: bad header line {line[:100]!r}")
            parsed.append((name, value))
            if name.lower() in ("connection", "proxy-connection"):
                named_in_connection |= {t.strip().lower() for t in value.split(",")}
        drop = _HOP_BY_HOP | named_in_connection
        headers = [f"{n}:{v}" for n, v in parsed if n.lower() not in drop]
        if not any(n.lower() == "host" for n, _ in parsed):
            headers.insert(0, f"Host: {authority}")
        return headers

    def _open(self, method: str, host: str, port: int) -> socket.socket:
        """Resolves ``host``, checks every address, connects to the first allowed one that
        answers; raises ``_Refusal`` (403 / 502 / 504) otherwise."""
        target = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        try:
            infos = self._resolve(host, port)
        except (OSError, UnicodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise _Refusal(502, f"scriptorium: cannot resolve {host!r}: {reason}")
        is_literal = _is_ip_literal(host)
        allowed: list[tuple[IPAddress, int]] = []
        denials: list[str] = []
        for info in infos:
            family, sockaddr = info[0], info[4]
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            try:
                ip = _normalize(sockaddr[0])
            except ValueError:
                continue
            reason = self.policy.check(sockaddr[0], port, None if is_literal else host)
            if reason is not None:
                denials.append(reason)
            elif (ip, port) not in allowed:
                allowed.append((ip, port))
        if not allowed:
            if not denials:
                raise _Refusal(502, f"scriptorium: {host!r} has no IP address")
            prefix = "" if is_literal else f"{host} -> "
            raise _Refusal(
                403, f"scriptorium: {prefix}{denials[0]}; {_REASON_TAIL}", counter="denied"
            )
        deadline = time.monotonic() + self.connect_timeout
        errors: list[str] = []
        timed_out = False
        for ip, p in allowed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.settimeout(remaining)
            try:
                sock.connect((str(ip), p))  # the checked address: no second lookup
            except TimeoutError:
                sock.close()
                timed_out = True
                errors.append(f"{ip}: timed out")
                continue
            except OSError as exc:
                sock.close()
                errors.append(f"{ip}: {exc.strerror or exc}")
                continue
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            return sock
        if timed_out and len(errors) <= 1:
            raise _Refusal(504, f"scriptorium: connecting to {target} timed out")
        raise _Refusal(502, f"scriptorium: cannot connect to {target} ({'; '.join(errors)})")

    def _pump(self, pipe: Pipe) -> None:
        """Relays until both directions ended, the idle timeout, or ``close``."""
        for sock in pipe.socks:
            sock.setblocking(False)
        with self._lock:
            self._live_pipes.add(pipe)
        selector = selectors.DefaultSelector()
        try:
            pipe.sync(selector)
            while not pipe.done and not self._closing:
                idle_left = pipe.last_activity + self.idle_timeout - time.monotonic()
                if idle_left <= 0:
                    break
                for key, mask in selector.select(timeout=min(idle_left, 1.0)):
                    _, i = key.data
                    pipe.handle(i, mask)
                pipe.sync(selector)
        finally:
            with self._lock:
                self._live_pipes.discard(pipe)
                self._counts["bytes_out"] += pipe.counts[0]
                self._counts["bytes_in"] += pipe.counts[1]
            selector.close()

    # --- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _getaddrinfo(host: str, port: int) -> Sequence[tuple]:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)

    def _count(self, *names: str) -> None:
        with self._lock:
            for name in names:
                self._counts[name] += 1

    def _event(self, line: str) -> None:
        if self._on_event is None:
            return
        with self._event_lock:
            self._events += 1
            n = self._events
            if n > _MAX_EVENTS + 1:
                return
            if n == _MAX_EVENTS + 1:
                line = "scriptorium: further network messages are not shown"
            try:
                self._on_event(line)
            except Exception:  # the caller's sink must not break the proxy
                pass

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._live_socks.add(sock)
        if self._closing:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._live_socks.discard(sock)


def _check_first_line(buf: bytes | bytearray) -> None:
    """Refuses at once (400) what cannot be an HTTP request line (e.g. TLS sent to the
    proxy itself), without waiting for a head that will never come."""
    first_line = buf.lstrip(b"\r\n").split(b"\n", 1)[0]
    if any(b < 0x20 and b != 0x0D or b > 0x7E for b in first_line[:8192]):
        raise _Refusal(400, "scriptorium: this is an HTTP proxy; not an HTTP request")


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _refuse_now(conn: socket.socket, status: int, text: str) -> None:
    """Answers a connection that gets no thread: reads what already arrived (so closing
    does not reset the client before it reads the answer), answers, closes."""
    try:
        conn.setblocking(False)
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass
        conn.send(_answer_bytes(status, text))
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    conn.close()
