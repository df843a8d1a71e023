"""The script library: folders, scripts, their versions and declared parameters."""

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Folder(models.Model):
    """A folder in the library tree. ``path`` is the slash-joined names from the root
    (kept up to date by the services when a folder is renamed or moved)."""

    name = models.CharField(max_length=100)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    path = models.CharField(max_length=1000, editable=False, db_index=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="script_folders",
        help_text="Who created it; the owner (and the owners of the folders above) may "
        "read, write and share it.",
    )
    # Who may do what: the rules are in scripts.permissions (the only place that reads
    # these four fields to decide).
    inherit_permissions = models.BooleanField(
        default=True,
        help_text="A subfolder takes its parent's groups and 'public' (its own below are "
        "ignored); untick to set its own. A top-level folder always uses its own.",
    )
    public = models.BooleanField(
        default=False,
        help_text="Every active user may see it and run what is inside.",
    )
    read_groups = models.ManyToManyField(
        Group,
        blank=True,
        related_name="readable_script_folders",
        help_text="These groups may see it and run what is inside.",
    )
    write_groups = models.ManyToManyField(
        Group,
        blank=True,
        related_name="writable_script_folders",
        help_text="These groups may also write: add subfolders and scripts, move scripts in, "
        "change the scripts inside, rename, move or delete it.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["path"]
        constraints = [
            models.UniqueConstraint(
                fields=["parent", "name"], name="scripts_folder_unique_name_in_parent"
            ),
            models.UniqueConstraint(
                fields=["name"],
                condition=Q(parent__isnull=True),
                name="scripts_folder_unique_name_at_root",
            ),
            models.CheckConstraint(
                condition=~Q(name__contains="/") & ~Q(name=""),
                name="scripts_folder_name_not_empty_no_slash",
            ),
        ]

    def __str__(self) -> str:
        return self.path or self.name


class Script(models.Model):
    """A script in the library. Its code lives in its versions; ``current_version`` is
    what a new run executes."""

    class OutputKind(models.TextChoices):
        TEXT = "text", "Text"
        FILES = "files", "Files"
        BOTH = "both", "Text and files"

    folder = models.ForeignKey(
        Folder, null=True, blank=True, on_delete=models.CASCADE, related_name="scripts"
    )
    name = models.CharField(max_length=255, help_text="The .py file name, e.g. report.py")
    display_name = models.CharField(max_length=255, blank=True)
    description = models.TextField(blank=True)
    logical_path = models.CharField(max_length=1300, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="scripts",
    )
    enabled = models.BooleanField(default=True)
    output_kind = models.CharField(
        max_length=8, choices=OutputKind.choices, default=OutputKind.TEXT
    )
    # Limits: None means the global default from settings.
    timeout_seconds = models.PositiveIntegerField(null=True, blank=True)
    memory_mb = models.PositiveIntegerField(null=True, blank=True)
    network_allowed = models.BooleanField(null=True, blank=True)
    extra_requirements = models.JSONField(
        default=list, blank=True, help_text='Extra requirements, e.g. ["requests>=2"]'
    )
    current_version = models.ForeignKey(
        "ScriptVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["logical_path"]
        constraints = [
            models.UniqueConstraint(
                fields=["folder", "name"], name="scripts_script_unique_name_in_folder"
            ),
            models.UniqueConstraint(
                fields=["name"],
                condition=Q(folder__isnull=True),
                name="scripts_script_unique_name_at_root",
            ),
            models.CheckConstraint(
                condition=Q(name__endswith=".py") & ~Q(name__contains="/"),
                name="scripts_script_name_is_py_file",
            ),
        ]

    def __str__(self) -> str:
        return self.logical_path


class ScriptVersion(models.Model):
    """One uploaded source of a script, immutable, with what inspection found in it."""

    class Kind(models.TextChoices):
        FUNCTION = "function", "Function (JSON in, JSON out)"
        COMMAND = "command", "Command (argv in, stdout and files out)"

    class CallStyle(models.TextChoices):
        DATA = "data", "main(data: dict) gets the whole input"
        KWARGS = "kwargs", "main(...) gets keyword arguments"
        ARGV = "argv", "python script.py ARGV"

    script = models.ForeignKey(Script, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    source = models.TextField()
    sha256 = models.CharField(max_length=64)
    size = models.PositiveIntegerField()
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="script_versions",
    )
    created_at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    call_style = models.CharField(max_length=16, choices=CallStyle.choices)
    input_schema = models.JSONField(default=dict, blank=True)
    requirements = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["script", "-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["script", "number"], name="scripts_version_unique_number"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.script.logical_path} v{self.number}"


class ScriptParameter(models.Model):
    """A parameter declared in the admin for a command script: it gives both the JSON
    Schema of the run's inputs and the argv the script receives."""

    class Type(models.TextChoices):
        STRING = "string", "Text"
        INTEGER = "integer", "Whole number"
        NUMBER = "number", "Number"
        BOOLEAN = "boolean", "Yes/no"
        FILE = "file", "Input file name"

    script = models.ForeignKey(Script, on_delete=models.CASCADE, related_name="parameters")
    name = models.CharField(max_length=100)
    type = models.CharField(max_length=16, choices=Type.choices, default=Type.STRING)
    required = models.BooleanField(default=False)
    default = models.JSONField(null=True, blank=True)
    choices = models.JSONField(default=list, blank=True)
    minimum = models.FloatField(null=True, blank=True)
    maximum = models.FloatField(null=True, blank=True)
    pattern = models.CharField(max_length=500, blank=True)
    help = models.CharField(max_length=500, blank=True)
    flag = models.CharField(
        max_length=100, blank=True, help_text="e.g. --limit; empty for a positional parameter"
    )
    position = models.PositiveIntegerField(default=0, help_text="Order on the command line")

    class Meta:
        ordering = ["script", "position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["script", "name"], name="scripts_parameter_unique_name"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ScriptExample(models.Model):
    """An example a script carries: inputs (or command-line arguments) and what must
    come out. Every new version of the script runs its examples in the sandbox before
    it is accepted (see ``scripts.services.script_upload``)."""

    script = models.ForeignKey(Script, on_delete=models.CASCADE, related_name="examples")
    name = models.CharField(max_length=100)
    inputs = models.JSONField(default=dict, blank=True, help_text="Function scripts: the data")
    args = models.JSONField(default=list, blank=True, help_text="Command scripts: the argv")
    expected_result = models.JSONField(
        null=True, blank=True, help_text="The exact result a function script must return"
    )
    expected_exit_code = models.IntegerField(
        null=True, blank=True, help_text="The exit code the run must end with (0 = success)"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["script", "name"]
        constraints = [
            models.UniqueConstraint(fields=["script", "name"], name="scripts_example_unique_name"),
            models.CheckConstraint(
                condition=models.Q(expected_result__isnull=False)
                | models.Q(expected_exit_code__isnull=False),
                name="scripts_example_expects_something",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ExampleResult(models.Model):
    """How one example went for one version (kept, also when the upload was forced)."""

    version = models.ForeignKey(
        ScriptVersion, on_delete=models.CASCADE, related_name="example_results"
    )
    example = models.ForeignKey(
        ScriptExample, null=True, blank=True, on_delete=models.SET_NULL, related_name="results"
    )
    example_name = models.CharField(max_length=100)
    passed = models.BooleanField()
    detail = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["version", "example_name"]

    def __str__(self) -> str:
        return f"{self.example_name}: {'passed' if self.passed else 'failed'}"
