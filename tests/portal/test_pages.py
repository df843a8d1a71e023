"""The portal's pages without a browser: access, the form's conversions, mail, charts."""

import textwrap

import pytest
from django.urls import reverse

from executions import services as execution_services
from executions.models import Execution
from portal import charts
from portal.forms import RunForm, field_specs
from scripts import services as script_services

pytestmark = pytest.mark.django_db

TYPED = """
from typing import Literal
def main(name: str, n: int = 2, kind: Literal["a", "b"] = "a", extra: dict | None = None,
         xs: list[float] | None = None) -> dict:
    return {"name": name}
"""


@pytest.fixture
def script(staff_user):
    content = textwrap.dedent(TYPED).encode()
    return script_services.script_upload(
        user=staff_user, file_name="t.py", content=content, folder=None
    ).script


@pytest.fixture
def browser(client, user):
    client.force_login(user)
    return client


@pytest.mark.parametrize("url", ["/", "/runs/", "/runs/1/", "/scripts/1/"])
def test_strangers_are_sent_to_sign_in(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("portal:login") + "?next=")


def test_form_turns_text_into_json_values_and_leaves_judging_to_the_service(script):
    schema = script.current_version.input_schema
    kinds = {s.name: s.kind for s in field_specs(schema)}
    assert kinds == {
        "name": "text",
        "n": "integer",
        "kind": "choice",
        "extra": "json",
        "xs": "list",
    }
    form = RunForm(
        {"name": "x", "n": "seven", "kind": '"b"', "extra": '{"k": [1]}', "xs": "1.5\n2"},
        schema=schema,
    )
    assert form.is_valid(), form.errors
    assert form.cleaned_data["inputs"] == {
        "name": "x",
        "n": "seven",  # passed on as typed: the service says it is no integer
        "kind": "b",
        "extra": {"k": [1]},
        "xs": [1.5, 2],
    }
    bad = RunForm({"extra": "{nope"}, schema=schema)
    assert not bad.is_valid() and "Not valid JSON" in str(bad.errors["extra"])


def test_a_refused_run_shows_errors_beside_fields_and_makes_no_row(browser, script):
    page = browser.post(reverse("portal:script", args=[script.pk]), {"n": "seven"})
    assert page.status_code == 200
    form = page.context["form"]
    assert "'name' is a required property" in form.errors["name"][0]
    assert "is not of type 'integer'" in form.errors["n"][0]
    assert not Execution.objects.exists()


def test_e_mail_me_sends_the_report_to_the_user(browser, user, script, monkeypatch):
    monkeypatch.setattr(execution_services, "_enqueue", lambda pk: None)
    response = browser.post(
        reverse("portal:script", args=[script.pk]), {"name": "x", "__email_me": "on"}
    )
    execution = Execution.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/runs/{execution.pk}/"
    assert execution.options["email_to"] == [user.email] and execution.source == "portal"


def test_someone_elses_run_is_not_found(browser, other_user, script):
    theirs = execution_services.execution_start(
        user=other_user, script_ref=script.pk, inputs={"name": "x"}, enqueue=False
    )
    assert browser.get(f"/runs/{theirs.pk}/").status_code == 404
    assert browser.post(f"/runs/{theirs.pk}/cancel/").status_code == 404
    assert browser.post(f"/runs/{theirs.pk}/rerun/").status_code == 404


def test_password_reset_mail_goes_through_the_email_backend(client, user, mailoutbox):
    response = client.post(reverse("portal:password_reset"), {"email": user.email})
    assert response.status_code == 302
    assert len(mailoutbox) == 1 and "/accounts/reset/" in mailoutbox[0].body


def test_admin_index_charts_are_svg(client, superuser, script):
    execution_services.execution_start(
        user=superuser, script_ref=script.pk, inputs={"name": "x"}, enqueue=False
    )
    panel = charts.runs_panel(None)
    assert panel["svg"].startswith("<svg") and "running 1" in panel["svg"]
    client.force_login(superuser)
    page = client.get("/admin/")
    assert page.content.count(b'class="scriptorium-chart"') == 2


def test_swagger_and_redoc_load_nothing_from_a_cdn(client, user):
    client.force_login(user)
    for url in ("/api/docs/", "/api/redoc/"):
        body = client.get(url).content.decode()
        assert "cdn" not in body.lower() and "googleapis" not in body
        assert "/static/drf_spectacular_sidecar/" in body
