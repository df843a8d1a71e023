import pytest
from django.urls import reverse

from executions import services


@pytest.mark.django_db
def test_execution_admin_pages_load(client, superuser, user, upload, run_now):
    script = upload("def main(data: dict):\n    print('log line')\n    return {'a': 1}\n")
    execution = services.execution_start(user=user, script_ref=script.pk, enqueue=False)
    services.execution_run(execution_id=execution.pk)
    client.force_login(superuser)
    assert client.get(reverse("admin:executions_execution_changelist")).status_code == 200
    page = client.get(reverse("admin:executions_execution_change", args=[execution.pk]))
    assert page.status_code == 200 and b"log line" in page.content
    live = client.get(reverse("admin:executions_execution_live", args=[execution.pk]))
    # The portal's run templates and script (portal/run.js follows unfinished runs).
    assert live.status_code == 200 and b"portal/run.js" in live.content
    assert b"log line" in live.content and b'id="run-result"' in live.content


@pytest.mark.django_db
def test_admin_rerun_action(client, superuser, user, upload):
    from executions.models import Execution

    script = upload("def main(data: dict):\n    return {}\n")
    execution = services.execution_start(user=user, script_ref=script.pk, enqueue=False)
    services.execution_run(execution_id=execution.pk)
    client.force_login(superuser)
    client.post(
        reverse("admin:executions_execution_changelist"),
        {"action": "rerun", "_selected_action": [execution.pk]},
    )
    assert Execution.objects.filter(rerun_of=execution).count() == 1
