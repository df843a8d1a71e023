"""The audit trail cannot be changed through the ORM, and only staff read it."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent, AuditImmutableError
from audit.services import audit_record
from tests.helpers import assert_error

URL = "/api/v1/audit/"


@pytest.mark.django_db
def test_the_model_refuses_updates_and_deletes(user):
    event = audit_record(action="x.y", actor=user)
    event.action = "changed"
    with pytest.raises(AuditImmutableError):
        event.save()
    with pytest.raises(AuditImmutableError):
        event.delete()
    with pytest.raises(AuditImmutableError):
        AuditEvent.objects.filter(pk=event.pk).update(action="changed")
    with pytest.raises(AuditImmutableError):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get(pk=event.pk).action == "x.y"


@pytest.mark.django_db
def test_non_staff_get_403_and_anonymous_401(api, anon_client):
    assert_error(api.get(URL), 403, "PERMISSION_DENIED")
    assert_error(anon_client.get(URL), 401)


@pytest.mark.django_db
def test_staff_list_filters_and_pages(staff_api, staff_user, user):
    audit_record(action="script.uploaded", actor=user, details={"version": 1})
    audit_record(action="script.deleted", actor=staff_user)
    audit_record(action="run.started", actor=user)
    body = staff_api.get(URL).json()
    assert {"count", "next", "previous", "results"} <= set(body)
    first = body["results"][0]
    assert set(first) == {
        "id",
        "created_at",
        "action",
        "actor",
        "actor_repr",
        "target_type",
        "target_id",
        "target_repr",
        "details",
        "ip",
    }

    def actions(query):
        response = staff_api.get(URL, query)
        assert response.status_code == 200, response.content
        return [e["action"] for e in response.json()["results"]]

    assert actions({"action": "run.started"}) == ["run.started"]
    assert actions({"action": "script."}) == ["script.deleted", "script.uploaded"]
    assert actions({"action": "script.*", "actor": "alice"}) == ["script.uploaded"]
    assert actions({"actor": str(staff_user.pk), "action": "script.deleted"}) == ["script.deleted"]
    future = (timezone.now() + timedelta(hours=1)).isoformat()
    assert actions({"since": future}) == []
    assert len(actions({"page_size": 1})) == 1
    assert_error(staff_api.get(URL, {"since": "yesterday"}), 400, "VALIDATION_ERROR")


@pytest.mark.django_db
def test_list_query_count_is_constant(staff_api, user, django_assert_max_num_queries):
    for i in range(30):
        audit_record(action=f"thing.{i % 3}", actor=user, target=user)
    staff_api.get(URL)  # warm: content types, session-less auth
    with CaptureQueriesContext(connection) as small:
        staff_api.get(URL, {"page_size": 2})
    with CaptureQueriesContext(connection) as large:
        staff_api.get(URL, {"page_size": 30})
    assert len(small) == len(large)
    assert len(large) <= 3  # the user (JWT), the count, the page


@pytest.mark.django_db
def test_admin_is_read_only_with_filters_and_search(client, staff_user, user):
    event = audit_record(action="script.uploaded", actor=user, target=user)
    client.force_login(staff_user)
    listing = client.get("/admin/audit/auditevent/", {"q": "alice", "area": "script"})
    assert listing.status_code == 200 and b"script.uploaded" in listing.content
    assert client.get(f"/admin/audit/auditevent/{event.pk}/change/").status_code == 200
    assert client.get("/admin/audit/auditevent/add/").status_code == 403
    assert client.get(f"/admin/audit/auditevent/{event.pk}/delete/").status_code == 403
    response = client.post(f"/admin/audit/auditevent/{event.pk}/change/", {"action": "hacked"})
    assert response.status_code == 403
    assert AuditEvent.objects.get(pk=event.pk).action == "script.uploaded"


@pytest.mark.django_db
def test_admin_is_closed_to_non_staff(client, user):
    client.force_login(user)
    assert client.get("/admin/audit/auditevent/").status_code == 302  # to the login page
