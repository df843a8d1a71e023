"""Real SMTP servers for the mail queue tests: aiosmtpd on 127.0.0.1 (recording what it
received, answering chosen codes) and a raw socket server for greetings it cannot fake
(421 at connect, dropped connections, silence)."""

import socket
import threading
import time
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from mailqueue.models import EmailParameter


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recorder:
    """aiosmtpd handler: records each accepted message; ``rcpt_replies`` maps an address
    prefix to a reply for RCPT, ``data_reply`` answers DATA instead of 250."""

    def __init__(self):
        self.messages = []
        self.rcpt_replies: dict[str, str] = {}
        self.data_reply: str | None = None
        self.delay = 0.0
        self.sessions = 0
        self.lock = threading.Lock()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        for prefix, reply in self.rcpt_replies.items():
            if address.startswith(prefix):
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            import asyncio

            await asyncio.sleep(self.delay)
        if self.data_reply:
            return self.data_reply
        with self.lock:
            self.messages.append(
                {
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": list(envelope.rcpt_tos),
                    "message": message_from_bytes(envelope.original_content, policy=policy.default),
                }
            )
        return "250 Message accepted"


class SMTPServer:
    def __init__(self, *, password: str | None = None):
        self.handler = Recorder()
        self.port = free_port()
        kwargs = {}
        if password is not None:

            def authenticator(server, session, envelope, mechanism, auth_data):
                ok = auth_data.login == b"mailer" and auth_data.password == password.encode()
                return AuthResult(success=ok, handled=False)

            kwargs = {"authenticator": authenticator, "auth_require_tls": False}
        self.controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, ready_timeout=5, **kwargs
        )

    @property
    def messages(self):
        return self.handler.messages

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        self.controller.stop()


@pytest.fixture
def smtp_server():
    """A recording aiosmtpd server on 127.0.0.1."""
    server = SMTPServer().start()
    yield server
    server.stop()


@pytest.fixture
def auth_smtp_server():
    """aiosmtpd that requires login ``mailer`` / ``s3cret`` (535 otherwise)."""
    server = SMTPServer(password="s3cret").start()
    yield server
    server.stop()


class RawServer:
    """A socket server that greets with ``greeting`` (or nothing) and then either
    closes (``hold=0``) or keeps the connection open and silent for ``hold`` seconds."""

    def __init__(self, greeting: bytes | None, hold: float = 0.0):
        self.greeting, self.hold = greeting, hold
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        self.sock.settimeout(0.1)
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            if self.greeting:
                conn.sendall(self.greeting)
            deadline = time.monotonic() + self.hold
            while time.monotonic() < deadline and not self.stopping:
                time.sleep(0.05)
            conn.close()

    def stop(self):
        self.stopping = True
        self.thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def raw_server():
    servers = []

    def make(greeting: bytes | None, hold: float = 0.0) -> RawServer:
        server = RawServer(greeting, hold)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def make_param(db):
    def make(port: int, code: str = "MAIN", **fields) -> EmailParameter:
        values = {
            "smtp_server": "127.0.0.1",
            "smtp_port": port,
            "smtp_mail_id": "noreply@example.com",
            "application_name": "Scriptorium",
            "smtp_ssl_flag": "N",
            "is_active": "Y",
            **fields,
        }
        return EmailParameter.objects.create(param_code=code, **values)

    return make


@pytest.fixture
def mail_settings(settings):
    """Fast retries and a short SMTP timeout for the processor."""
    settings.MAILQUEUE_SMTP_TIMEOUT = 1.0
    settings.MAILQUEUE_BACKOFF_SECONDS = 60
    settings.MAILQUEUE_DEFAULT_PARAM_CODE = ""
    settings.MAILQUEUE_ENCRYPTION_KEY = ""
    return settings
