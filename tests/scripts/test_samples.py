"""load_samples: idempotent, each sample shows its convention, samples run as plain
Python (real subprocesses)."""

import io
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command

from scripts import selectors
from scripts.models import Script, ScriptVersion
from scripts.samples import SAMPLES_DIR


def run_command(*args) -> str:
    out = io.StringIO()
    call_command("load_samples", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_load_samples_is_idempotent_and_shows_each_convention(superuser):
    first = run_command()
    assert first.count("created") == 6
    again = run_command()
    assert again.count("unchanged") == 6 and ScriptVersion.objects.count() == 6
    scripts = {s.name: s for s in Script.objects.select_related("current_version", "owner")}
    assert {s.logical_path for s in scripts.values()} == {f"samples/{n}" for n in scripts}
    assert all(s.owner == superuser for s in scripts.values())
    kinds = {n: (s.current_version.kind, s.current_version.call_style) for n, s in scripts.items()}
    assert kinds["hello.py"] == ("command", "argv")
    assert kinds["greet.py"] == ("function", "kwargs")
    assert kinds["progress.py"] == ("function", "kwargs")
    assert kinds["word_count.py"] == ("command", "argv")
    assert scripts["humanize_sizes.py"].current_version.requirements == ["humanize>=4"]
    assert scripts["progress.py"].current_version.requirements == []
    assert scripts["report_files.py"].output_kind == "files"
    word_count = scripts["word_count.py"].current_version
    assert selectors.script_version_argv(
        version=word_count, inputs={"text": "a b", "lower": True}
    ) == ["a b", "--top", "3", "--lower"]
    greet = scripts["greet.py"].current_version.input_schema
    assert greet["properties"]["style"]["enum"] == ["plain", "shout"]


@pytest.mark.django_db
def test_load_samples_without_a_superuser_fails_cleanly():
    with pytest.raises(CommandError, match="superuser"):
        run_command()
    assert not Script.objects.exists()


def test_png_sample_writes_real_files(tmp_path):
    subprocess.run(
        [sys.executable, "-I", str(SAMPLES_DIR / "report_files.py")],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=30,
    )
    png = (tmp_path / "chart.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png.endswith(b"IEND\xaeB`\x82")
    assert (tmp_path / "sales.csv").read_text().startswith("day,sales")
    assert '"total": 76' in (tmp_path / "summary.json").read_text()


def test_progress_sample_runs_without_the_helper(tmp_path):
    code = "import progress; print(progress.main(steps=2, delay=0))"
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(SAMPLES_DIR)!r}); {code}",
        ],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "[ 50%] step 1 of 2" in result.stdout and "{'steps': 2}" in result.stdout
