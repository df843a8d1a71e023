"""Every sample script runs through the real runner, as a new user would try them."""

import pytest
from django.core.management import call_command

from executions import services
from executions.models import Execution

CASES = [
    ("samples/hello.py", {}, None),
    ("samples/greet.py", {"name": "Ada", "times": 2, "style": "shout"}, None),
    ("samples/word_count.py", {"text": "b a b c b a", "top": 2, "lower": True}, None),
    ("samples/report_files.py", None, {"csv", "json", "png"}),
    ("samples/progress.py", {"steps": 3, "delay": 0.01}, None),
]


@pytest.mark.django_db
@pytest.mark.slow
@pytest.mark.parametrize("path,inputs,extensions", CASES)
def test_sample_runs_and_succeeds(superuser, path, inputs, extensions):
    call_command("load_samples", verbosity=0, stdout=open("/dev/null", "w"))
    execution = services.execution_start(
        user=superuser, script_ref=path, inputs=inputs, enqueue=False
    )
    services.execution_run(execution_id=execution.pk)
    execution = Execution.objects.get(pk=execution.pk)
    log = "".join(execution.log_chunks.values_list("text", flat=True))
    assert execution.status == "succeeded", (execution.error_code, execution.error_message, log)
    if path.endswith("greet.py"):
        assert execution.result == {"greetings": ["HELLO, ADA!", "HELLO, ADA!"]}
    if path.endswith("word_count.py"):
        assert "3  b" in log and "2  a" in log
    if path.endswith("progress.py"):
        assert execution.progress_percent == 100
    if extensions:
        names = set(execution.artifacts.values_list("name", flat=True))
        assert {n.rsplit(".", 1)[-1] for n in names} >= extensions
        png = execution.artifacts.get(name__endswith=".png")
        assert png.category == "image"
        from storage.services import file_open

        with file_open(stored_file=png.stored_file) as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
