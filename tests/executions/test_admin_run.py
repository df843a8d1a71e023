import pytest
from django.urls import reverse

from executions.models import Execution


@pytest.fixture
def admin_client_(client, superuser):
    client.force_login(superuser)
    return client


@pytest.mark.django_db
def test_run_page_prefills_defaults_and_starts_a_run(
    admin_client_, upload, django_capture_on_commit_callbacks
):
    script = upload("def main(name: str, times: int = 3) -> dict:\n    return {'n': times}\n")
    url = reverse("admin:scripts_script_run", args=[script.pk])
    page = admin_client_.get(url)
    assert page.status_code == 200 and b"&quot;times&quot;: 3" in page.content
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_.post(url, {"data": '{"name": "x"}'})
    execution = Execution.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:executions_execution_live", args=[execution.pk])
    assert execution.source == "admin" and execution.status == "succeeded"
    assert execution.result == {"n": 3}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "data,problem", [("{not json", b"Not valid JSON"), ('{"name": 5}', b"name")]
)
def test_run_page_shows_bad_inputs_and_starts_nothing(admin_client_, upload, data, problem):
    script = upload("def main(name: str) -> dict:\n    return {}\n")
    page = admin_client_.post(reverse("admin:scripts_script_run", args=[script.pk]), {"data": data})
    assert page.status_code == 200 and problem in page.content
    assert not Execution.objects.exists()


@pytest.mark.django_db
def test_script_change_page_links_to_run(admin_client_, upload):
    script = upload("def main(data: dict):\n    return {}\n")
    page = admin_client_.get(reverse("admin:scripts_script_change", args=[script.pk]))
    assert reverse("admin:scripts_script_run", args=[script.pk]).encode() in page.content


@pytest.mark.django_db
def test_prepare_environment_action(admin_client_, upload):
    script = upload("def main(data: dict):\n    return {}\n")
    page = admin_client_.post(
        reverse("admin:scripts_script_changelist"),
        {"action": "prepare_environment", "_selected_action": [script.pk]},
        follow=True,
    )
    assert b"environment ready" in page.content


@pytest.mark.django_db
def test_prepare_environment_failure_is_reported(upload, settings):
    from config.errors import ApplicationError
    from executions.services import environment_prepare

    script = upload("def main(data: dict):\n    return {}\n")
    script.extra_requirements = ["surely-not-a-real-package-zz9==1.0"]
    script.save()
    settings.ENVS_INSTALL_ARGS = ["--no-index"]  # no network: the package cannot be found
    with pytest.raises(ApplicationError) as caught:
        environment_prepare(script=script)
    assert caught.value.code == "DEPENDENCY_INSTALL_FAILED"
    assert caught.value.details["output"]
