"""gunicorn settings: ``gunicorn -c config/gunicorn.conf.py config.wsgi:application``.

Every value comes from the environment (documented in .env.example). Threads serve the
long requests the API has (a sync run waits up to SYNC_RUN_WAIT; an SSE stream follows
a run), so that one slow client does not hold a whole worker process.
"""

import os


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
workers = _int("WEB_WORKERS", 2)
threads = _int("WEB_THREADS", 8)
worker_class = "gthread"
# Above the longest request the app serves on purpose: a sync run's wait. SSE streams
# send a keep-alive comment more often than that, so they are not cut.
timeout = max(_int("WEB_TIMEOUT", 0), int(_float("SYNC_RUN_WAIT", 30)) + 30)
graceful_timeout = _int("WEB_GRACEFUL_TIMEOUT", 30)
keepalive = _int("WEB_KEEPALIVE", 5)
max_requests = _int("WEB_MAX_REQUESTS", 0)
max_requests_jitter = max_requests // 10
# The forwarded-for/proto headers are trusted only from these addresses (the proxy).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# Request bodies are bounded by the app (uploads stream to storage); headers here.
limit_request_line = 8190
limit_request_fields = 100

accesslog = os.environ.get("WEB_ACCESS_LOG", "-") or None
errorlog = "-"
loglevel = os.environ.get("WEB_LOG_LEVEL", "info")
# No query string (%(q)s), no Authorization, no cookies: the path (%(U)s) only. A
# key or token must never reach a log, and query strings may carry personal data.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s"'
