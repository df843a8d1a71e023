"""The published OpenAPI says what the views really answer: nullable fields, time
formats, every error status (409s by code), and one tag per app."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    from rest_framework.test import APIClient

    with django_db_blocker.unblock():
        response = APIClient().get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def _operation(schema, path, method):
    return schema["paths"][path][method]


def _component(schema, name):
    return schema["components"]["schemas"][name]


def test_operations_are_grouped_by_app(schema):
    from config.schema import TAG_DESCRIPTIONS, TAGS

    tags = {
        tag
        for item in schema["paths"].values()
        for operation in item.values()
        for tag in operation["tags"]
    }
    # every operation sits under a declared, described app tag (never the catch-all "v1")
    assert tags <= set(TAGS.values()) and tags <= set(TAG_DESCRIPTIONS), tags
    assert {"auth", "invitations", "folders", "scripts", "runs", "files", "mail"} <= tags
    order = list(dict.fromkeys(TAGS.values()))
    assert [t["name"] for t in schema["tags"]] == [t for t in order if t in tags]
    assert _operation(schema, "/api/v1/run/{logical_path}", "post")["tags"] == ["runs"]
    assert _operation(schema, "/api/v1/tree/", "get")["tags"] == ["folders"]


@pytest.mark.parametrize(
    "path, method, code",
    [
        ("/api/v1/folders/{id}/", "delete", "FOLDER_NOT_EMPTY"),
        ("/api/v1/folders/", "post", "FOLDER_EXISTS"),
        ("/api/v1/mail/smtp-params/{code}/", "delete", "PARAM_IN_USE"),
        ("/api/v1/mail/smtp-params/", "post", "PARAM_EXISTS"),
        ("/api/v1/auth/register/", "post", "USER_EXISTS"),
        ("/api/v1/invitations/", "post", "USER_EXISTS"),
        ("/api/v1/mail/queue/{id}/requeue/", "post", "MAIL_ALREADY_SENT"),
        ("/api/v1/executions/{id}/cancel/", "post", "EXECUTION_FINISHED"),
    ],
)
def test_conflicts_are_documented_with_their_codes(schema, path, method, code):
    response = _operation(schema, path, method)["responses"]["409"]
    assert code in response["description"]
    assert response["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }


def test_every_operation_documents_its_error_statuses(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert {"400", "401", "404"} <= set(responses), (method, path)
            if method in ("post", "put", "patch"):
                assert {"413", "415"} <= set(responses), (method, path)
            for status in ("400", "401", "404"):
                content = responses[status]["content"]
                assert list(content) == ["application/json"], (method, path, status)
    throttled = _operation(schema, "/api/v1/auth/token/", "post")["responses"]
    assert "429" in throttled
    assert "429" not in _operation(schema, "/api/v1/folders/", "get")["responses"]
    assert "403" in _operation(schema, "/api/v1/auth/register/", "post")["responses"]
    assert "503" in _operation(schema, "/api/v1/mail/test-connection/", "post")["responses"]


def test_nullable_fields_are_nullable(schema):
    assert _component(schema, "StoredFile")["properties"]["execution"]["nullable"] is True
    queue = _component(schema, "Queue")["properties"]
    for name in ("cc", "paramCode", "bounceReason", "lastRetryDate", "sentDate", "to"):
        assert queue[name].get("nullable") is True, name


def test_mail_config_times_are_documented_as_returned(schema):
    start = _component(schema, "Config")["properties"]["start_time"]
    assert "format" not in start and start["pattern"].startswith("^([01][0-9]|2[0-3]):")


def test_sse_endpoint_documents_json_errors(schema):
    responses = _operation(schema, "/api/v1/executions/{id}/events/", "get")["responses"]
    assert list(responses["200"]["content"]) == ["text/event-stream"]
    assert list(responses["404"]["content"]) == ["application/json"]
