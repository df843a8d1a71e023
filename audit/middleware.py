"""Makes the current request known to audit_record, wherever the event is recorded
(a signal handler deep inside a service has no request argument)."""

import contextvars

_current_request: contextvars.ContextVar = contextvars.ContextVar("audit_request", default=None)


def current_request():
    """The HttpRequest being served in this context, or None (workers, commands)."""
    return _current_request.get()


class AuditContextMiddleware:
    """Stores the request for the time it is served. DRF sets ``request.user`` on the
    underlying request once it authenticates (JWT, API key), so the actor is read when
    an event is recorded, not here."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _current_request.set(request)
        try:
            return self.get_response(request)
        finally:
            _current_request.reset(token)
