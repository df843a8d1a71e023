"""The sample scripts (one file per convention) and their loader."""

from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import transaction

from config.errors import ApplicationError
from scripts import services
from scripts.models import Folder, Script, ScriptParameter

SAMPLES_DIR = Path(__file__).resolve().parent
FOLDER = "samples"
SAMPLES = {
    "hello.py": ("Hello world", "text"),
    "greet.py": ("Typed function script (JSON in/out)", "text"),
    "word_count.py": ("Command script with declared parameters", "text"),
    "report_files.py": ("CSV + JSON + PNG files", "files"),
    "progress.py": ("Progress reporting", "text"),
    "humanize_sizes.py": ("PEP 723 dependency (humanize)", "text"),
}
WORD_COUNT_PARAMETERS = [
    {"name": "text", "required": True, "position": 0, "help": "The text to count words in"},
    {"name": "top", "type": "integer", "flag": "--top", "default": 3, "minimum": 1,
     "maximum": 50, "position": 1, "help": "How many words to list"},
    {"name": "lower", "type": "boolean", "flag": "--lower", "position": 2,
     "help": "Count case-insensitively"},
]


def load_samples(*, owner_username: str | None = None) -> list[tuple[str, str]]:
    """Create the "samples" folder (public: every active user may see and run the
    samples) and upload each sample (a new version only when its bytes changed).
    Returns [(logical_path, "created" | "updated" | "unchanged")]."""
    User = get_user_model()
    users = User.objects.filter(is_active=True)
    owner = (
        users.filter(username=owner_username).first()
        if owner_username
        else users.filter(is_superuser=True).order_by("pk").first()
    )
    if owner is None:
        raise ApplicationError(
            "NO_OWNER",
            "No active superuser to own the samples (create one, or pass --owner).",
        )
    results = []
    with transaction.atomic():
        folder = Folder.objects.filter(parent=None, name=FOLDER).first()
        if folder is None:
            folder = services.folder_create(user=owner, name=FOLDER)
            services.folder_share(user=owner, folder=folder, public=True)  # for everyone
        for name, (title, output_kind) in SAMPLES.items():
            existed = Script.objects.filter(folder=folder, name=name).exists()
            version = services.script_upload(
                user=owner, file_name=name, content=(SAMPLES_DIR / name).read_bytes(),
                folder=folder, display_name=title, replace=True,
            )
            Script.objects.filter(pk=version.script_id).update(output_kind=output_kind)
            what = "unchanged" if not version.is_new else ("updated" if existed else "created")
            results.append((version.script.logical_path, what))
        script = Script.objects.get(folder=folder, name="word_count.py")
        for spec in WORD_COUNT_PARAMETERS:
            ScriptParameter.objects.update_or_create(
                script=script, name=spec["name"], defaults=spec
            )
    return results
