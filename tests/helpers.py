"""Assertions tests share (fixtures live in conftest.py)."""


def assert_error(response, status: int, code: str | None = None) -> dict:
    """Assert the one error shape with ``status`` (and ``code``); return the error."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]
