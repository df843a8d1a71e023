"""The run's end of the network proxy: a TCP port inside the run that leads to the proxy.

Runs INSIDE the sandbox (imported from the support directory by the sandbox's init
process), so it uses the standard library only and imports fast. A run with network has
only its own loopback; ``serve`` listens on ``127.0.0.1:3128`` there and relays every
accepted connection, byte for byte, to a new connection on the UNIX socket of the run's
``netpolicy.ProxyServer`` (outside the sandbox), which decides where the run may go.

One thread relays all connections (non-blocking sockets and a selector), so the relay
costs the run one task however many connections a script opens; at most
``max_connections`` are relayed at once, further ones wait in the listen queue.

``Pipe`` (the two-way, half-close aware byte pump) is shared with the proxy.
"""

from __future__ import annotations

import select
import selectors
import socket
import threading
import time
from collections.abc import Callable

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "Pipe", "RelayThread", "serve"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3128

_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE
_CHUNK = 64 * 1024
_BUFFER_MAX = 256 * 1024  # bytes held per direction before reading pauses


class Pipe:
    """Relays bytes between two connected non-blocking sockets, both ways.

    Direction ``d`` carries what is read from ``socks[d]`` to ``socks[1 - d]``. When a
    side ends (EOF, or a reset, which counts as EOF after the bytes already received),
    the rest of its direction is delivered and then the other socket's write half is
    shut, so half-closed connections keep working. When a socket can no longer be
    written, its direction is dropped. ``done`` is true once both directions ended;
    the owner then closes the sockets (``close``).

    ``transforms[d]``, if given, is an object with ``feed(bytes) -> bytes`` and
    ``flush() -> bytes`` that rewrites direction ``d`` as it streams. ``counts[d]`` is the
    number of bytes delivered in direction ``d``. The owner drives it with a selector:
    ``sync(selector)`` after every ``handle`` (and once at the start).
    """

    def __init__(
        self,
        a: socket.socket,
        b: socket.socket,
        transforms: tuple[object | None, object | None] = (None, None),
    ) -> None:
        self.socks = (a, b)
        self.bufs = (bytearray(), bytearray())
        self.transforms = transforms
        self.counts = [0, 0]
        self.last_activity = time.monotonic()
        self._open = [True, True]  # direction still running
        self._reading = [True, True]  # still reading socks[d]
        self._registered: list[int] = [0, 0]  # selector events per socket (0: not registered)

    @property
    def done(self) -> bool:
        """Both directions have ended."""
        return not (self._open[0] or self._open[1])

    def add(self, direction: int, data: bytes) -> None:
        """Queues ``data`` (not yet transformed) as if it had been read in ``direction``."""
        self._receive(direction, data)

    def events_for(self, i: int) -> int:
        """The selector events socket ``i`` waits for now (0: none)."""
        events = 0
        if self._open[i] and self._reading[i] and len(self.bufs[i]) < _BUFFER_MAX:
            events |= _READ
        if self._open[1 - i] and self.bufs[1 - i]:
            events |= _WRITE
        return events

    def sync(self, selector: selectors.BaseSelector) -> None:
        """Brings the selector's registrations of both sockets up to date; the data of a
        registration is ``(pipe, index)``. Unregisters both once the pipe is done."""
        for i, sock in enumerate(self.socks):
            want = 0 if self.done else self.events_for(i)
            have = self._registered[i]
            if want == have:
                continue
            try:
                if not have:
                    selector.register(sock, want, (self, i))
                elif not want:
                    selector.unregister(sock)
                else:
                    selector.modify(sock, want, (self, i))
            except (KeyError, ValueError, OSError):
                want = 0
            self._registered[i] = want

    def handle(self, i: int, mask: int) -> None:
        """Acts on the selector's report ``mask`` for socket ``i``."""
        self.last_activity = time.monotonic()
        if mask & _WRITE:
            self._write(i)
        if mask & _READ:
            self._read(i)

    def close(self, selector: selectors.BaseSelector | None = None) -> None:
        """Unregisters (when a selector is given) and closes both sockets."""
        for i, sock in enumerate(self.socks):
            if selector is not None and self._registered[i]:
                try:
                    selector.unregister(sock)
                except (KeyError, ValueError, OSError):
                    pass
            self._registered[i] = 0
            try:
                sock.close()
            except OSError:
                pass
        self._open = [False, False]

    # --- internals ---------------------------------------------------------------------

    def _read(self, i: int) -> None:
        try:
            data = self.socks[i].recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # a reset: what was received before it has been read
            data = None
        if data:
            self._receive(i, data)
            return
        self._reading[i] = False
        transform = self.transforms[i]
        if transform is not None and self._open[i]:
            self.bufs[i].extend(transform.flush())  # type: ignore[attr-defined]
        if data is None or _hung_up(self.socks[i]):
            # Closed, not half-closed: nothing more can be written to it either.
            if self._open[1 - i]:
                self._finish(1 - i)
        self._settle(i)

    def _receive(self, d: int, data: bytes) -> None:
        transform = self.transforms[d]
        if transform is not None:
            data = transform.feed(data)  # type: ignore[attr-defined]
        if self._open[d]:
            self.bufs[d].extend(data)

    def _write(self, j: int) -> None:
        d = 1 - j
        buf = self.bufs[d]
        if not buf:
            return
        try:
            sent = self.socks[j].send(buf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # the receiving end is gone: nothing more can be delivered
            self._finish(d)
            return
        del buf[:sent]
        self.counts[d] += sent
        self._settle(d)

    def _settle(self, d: int) -> None:
        if self._open[d] and not self._reading[d] and not self.bufs[d]:
            self._finish(d)

    def _finish(self, d: int) -> None:
        self._open[d] = False
        self._reading[d] = False
        self.bufs[d].clear()
        try:
            self.socks[1 - d].shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _hung_up(sock: socket.socket) -> bool:
    """True if the peer closed ``sock`` entirely (POLLHUP), not just its sending half."""
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return any(events & select.POLLHUP for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll() here: assume a half-close
        return False


class RelayThread(threading.Thread):
    """The relay's one thread; ``address`` is the (host, port) it listens on."""

    def __init__(
        self,
        listener: socket.socket,
        connect: Callable[[], socket.socket],
        max_connections: int,
        idle_timeout: float,
    ) -> None:
        super().__init__(name="scriptorium-netrelay", daemon=True)
        self.address: tuple[str, int] = listener.getsockname()[:2]
        self._listener = listener
        self._connect = connect
        self._max = max(1, max_connections)
        self._idle = idle_timeout
        self._pipes: set[Pipe] = set()
        self._wake_r, self._wake_w = socket.socketpair()
        self._closing = False

    @property
    def connections(self) -> int:
        """Connections being relayed now."""
        return len(self._pipes)

    def close(self, timeout: float = 5.0) -> None:
        """Stops the relay: closes the listener and every relayed connection."""
        self._closing = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)

    def run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._wake_r, _READ, None)
        accepting = False
        paused_until = 0.0
        try:
            while not self._closing:
                want = len(self._pipes) < self._max and time.monotonic() >= paused_until
                if want != accepting:
                    if want:
                        selector.register(self._listener, _READ, "accept")
                    else:
                        selector.unregister(self._listener)
                    accepting = want
                for key, mask in selector.select(timeout=1.0):
                    if key.data == "accept":
                        if not self._accept(selector):
                            paused_until = time.monotonic() + 0.5  # e.g. out of descriptors
                    elif key.data is not None:
                        pipe, i = key.data
                        if pipe in self._pipes:
                            pipe.handle(i, mask)
                            self._settle(pipe, selector)
                if self._idle > 0:
                    limit = time.monotonic() - self._idle
                    for pipe in [p for p in self._pipes if p.last_activity < limit]:
                        self._pipes.discard(pipe)
                        pipe.close(selector)
        finally:
            for pipe in list(self._pipes):
                pipe.close(selector)
            self._pipes.clear()
            for sock in (self._listener, self._wake_r, self._wake_w):
                try:
                    sock.close()
                except OSError:
                    pass
            selector.close()

    def _accept(self, selector: selectors.BaseSelector) -> bool:
        try:
            client, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        client.setblocking(False)
        try:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        try:
            upstream = self._connect()
        except OSError as exc:
            _answer(client, 502, f"scriptorium: the network proxy is not reachable ({exc})")
            return True
        pipe = Pipe(client, upstream)
        self._pipes.add(pipe)
        pipe.sync(selector)
        return True

    def _settle(self, pipe: Pipe, selector: selectors.BaseSelector) -> None:
        if pipe.done:
            self._pipes.discard(pipe)
            pipe.close(selector)
        else:
            pipe.sync(selector)


def _answer(sock: socket.socket, status: int, text: str) -> None:
    """Best effort: sends a short plain-text HTTP answer and closes ``sock``."""
    reasons = {502: "Bad Gateway", 503: "Service Unavailable"}
    body = (text + "\n").encode("utf-8", "replace")
    head = (
        f"HTTP/1.1 {status} {reasons.get(status, 'Error')}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    try:
        sock.send(head.encode("ascii") + body)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    sock.close()


def serve(
    unix_path: str,
    port: int = DEFAULT_PORT,
    host: str = DEFAULT_HOST,
    *,
    max_connections: int = 128,
    idle_timeout: float = 600.0,
) -> RelayThread:
    """Listens on TCP ``host:port`` and relays each connection to ``unix_path``.

    The listening socket is bound before this returns (errors such as a port in use are
    raised here); the relay then runs in a started daemon thread, returned (``.address``
    is the bound address, ``port=0`` picks a free port; ``.close()`` stops it). At most
    ``max_connections`` connections are relayed at once; more wait to be accepted. A
    connection with no traffic either way for ``idle_timeout`` seconds is closed (0: never).
    If the proxy's socket cannot be reached, the client gets a ``502`` with the reason.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(max(16, max_connections))
        listener.setblocking(False)
    except BaseException:
        listener.close()
        raise

    def connect() -> socket.socket:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.setblocking(False)
        try:
            upstream.connect(unix_path)
        except BaseException:
            upstream.close()
            raise
        return upstream

    thread = RelayThread(listener, connect, max_connections, idle_timeout)
    thread.start()
    return thread
