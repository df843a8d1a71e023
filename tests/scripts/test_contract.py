"""The functions the runner relies on: visibility, script_get_for_run, schema, argv,
requirements, upload rules and versions."""

import hashlib

import pytest
from model_bakery import baker

from config.errors import ApplicationError
from scripts import permissions, selectors, services
from scripts.models import Script, ScriptParameter, ScriptVersion

HELLO = "def main(name: str = 'world'):\n    return {'greeting': f'hello {name}'}\n"


def code(excinfo) -> str:
    return excinfo.value.code


@pytest.mark.django_db
class TestUpload:
    def test_creates_script_and_first_version(self, user, folder, upload):
        version = upload(user, "hello.py", HELLO, folder=folder, description="Says hello")
        script = version.script
        assert (script.logical_path, script.owner, script.display_name) == (
            "reports/hello.py",
            user,
            "hello",
        )
        assert script.current_version == version and version.number == 1
        assert version.sha256 == hashlib.sha256(HELLO.encode()).hexdigest()
        assert (version.kind, version.call_style, version.uploaded_by) == (
            "function",
            "kwargs",
            user,
        )
        assert version.size == len(HELLO.encode()) and version.source == HELLO

    def test_same_name_without_replace_is_409(self, user, upload):
        upload(user, "a.py", "print(1)\n")
        with pytest.raises(ApplicationError) as info:
            upload(user, "a.py", "print(2)\n")
        assert code(info) == "SCRIPT_EXISTS_REPLACE_REQUIRED" and info.value.status == 409
        assert ScriptVersion.objects.count() == 1

    def test_replace_adds_a_version_and_keeps_the_old(self, user, upload):
        first = upload(user, "a.py", "print(1)\n")
        second = upload(user, "a.py", "print(2)\n", replace=True)
        assert second.number == 2 and second.script_id == first.script_id
        script = Script.objects.get()
        assert script.current_version == second
        assert ScriptVersion.objects.get(pk=first.pk).source == "print(1)\n"

    def test_identical_bytes_add_no_version(self, user, upload):
        first = upload(user, "a.py", "print(1)\n")
        again = upload(user, "a.py", "print(1)\n", replace=True)
        assert again == first and ScriptVersion.objects.count() == 1

    def test_replace_by_someone_else_is_403(self, user, other_user, upload):
        upload(user, "a.py", "print(1)\n")
        with pytest.raises(ApplicationError) as info:
            upload(other_user, "a.py", "print(2)\n", replace=True)
        assert info.value.status == 403 and ScriptVersion.objects.count() == 1

    def test_staff_may_replace(self, user, staff_user, upload):
        upload(user, "a.py", "print(1)\n")
        assert upload(staff_user, "a.py", "print(2)\n", replace=True).number == 2

    @pytest.mark.parametrize(
        "name, content, expected",
        [
            ("notes.txt", b"print(1)\n", "SCRIPT_NOT_PYTHON"),
            ("a.pyc", b"print(1)\n", "SCRIPT_NOT_PYTHON"),
            ("../a.py", b"print(1)\n", "VALIDATION_ERROR"),
            (".py", b"print(1)\n", "VALIDATION_ERROR"),
            ("a.py", b"print('\xe9')\n", "SCRIPT_NOT_UTF8"),
            ("a.py", b"   \n", "SCRIPT_EMPTY"),
            ("a.py", b"def main(:\n", "SCRIPT_SYNTAX_ERROR"),
        ],
    )
    def test_bad_uploads_are_refused_and_leave_nothing(self, user, upload, name, content, expected):
        with pytest.raises(ApplicationError) as info:
            upload(user, name, content)
        assert code(info) == expected and info.value.status == 400
        assert not Script.objects.exists() and not ScriptVersion.objects.exists()

    def test_oversized_upload_is_refused(self, user, upload, settings):
        settings.SCRIPT_MAX_UPLOAD_BYTES = 100
        with pytest.raises(ApplicationError) as info:
            upload(user, "big.py", "x = 1\n" * 20)
        assert code(info) == "SCRIPT_TOO_LARGE" and info.value.status == 413
        assert info.value.details["limit"] == 100
        assert not Script.objects.exists()
        assert upload(user, "small.py", "x = 1\n" * 16).size == 96

    def test_syntax_error_on_replace_keeps_current_version(self, user, upload):
        upload(user, "a.py", "print(1)\n")
        with pytest.raises(ApplicationError) as info:
            upload(user, "a.py", "print(\n", replace=True)
        assert info.value.details["line"] == 1
        assert ScriptVersion.objects.count() == 1

    def test_utf8_bom_is_accepted(self, user, upload):
        version = upload(user, "bom.py", b"\xef\xbb\xbfprint('hi')\n")
        assert version.source == "print('hi')\n"

    def test_inactive_user_may_not_upload(self, make_user, upload):
        ghost = make_user(username="ghost", is_active=False)
        with pytest.raises(ApplicationError) as info:
            upload(ghost, "a.py", "print(1)\n")
        assert info.value.status == 403


@pytest.mark.django_db
class TestVisibility:
    def test_restricted_folder_and_below_hidden_from_non_members(
        self, user, other_user, staff_user, secret_folder, secret_group, upload
    ):
        sub = services.folder_create(user=staff_user, name="deep", parent=secret_folder)
        inside = upload(staff_user, "s.py", "print(1)\n", folder=sub).script
        public = upload(staff_user, "p.py", "print(1)\n").script
        # a folder whose name merely starts like the secret one is not hidden
        lookalike = services.folder_create(user=staff_user, name="secretive")
        services.folder_share(user=staff_user, folder=lookalike, public=True)
        near = upload(staff_user, "n.py", "print(1)\n", folder=lookalike).script
        user.groups.add(secret_group)
        assert set(permissions.scripts_runnable_by(user=user)) == {inside, public, near}
        assert set(permissions.scripts_runnable_by(user=other_user)) == {public, near}
        assert set(permissions.scripts_runnable_by(user=staff_user)) == {inside, public, near}
        assert set(permissions.folders_readable_by(user=other_user)) == {lookalike}

    def test_inactive_and_anonymous_see_nothing(self, make_user, user, upload):
        from django.contrib.auth.models import AnonymousUser

        upload(user, "p.py", "print(1)\n")
        ghost = make_user(username="ghost", is_active=False)
        assert not permissions.scripts_runnable_by(user=ghost).exists()
        assert not permissions.scripts_runnable_by(user=AnonymousUser()).exists()


@pytest.mark.django_db
class TestGetForRun:
    def test_by_id_and_by_logical_path(self, user, folder, upload, django_assert_num_queries):
        script = upload(user, "hello.py", HELLO, folder=folder).script
        assert selectors.script_get_for_run(user=user, ref=script.pk) == script
        assert selectors.script_get_for_run(user=user, ref=str(script.pk)) == script
        with django_assert_num_queries(2):  # the script, then its folder's access
            found = selectors.script_get_for_run(user=user, ref="reports/hello.py")
            assert found.folder.path == "reports" and found.current_version.number == 1

    def test_missing_hidden_disabled_and_versionless(
        self, user, other_user, staff_user, secret_folder, upload
    ):
        hidden = upload(staff_user, "h.py", "print(1)\n", folder=secret_folder).script
        for ref in (999999, "nope.py", hidden.pk, "secret/h.py"):
            with pytest.raises(ApplicationError) as info:
                selectors.script_get_for_run(user=other_user, ref=ref)
            assert (info.value.status, code(info)) == (404, "NOT_FOUND")
        disabled = upload(user, "d.py", "print(1)\n").script
        Script.objects.filter(pk=disabled.pk).update(enabled=False)
        with pytest.raises(ApplicationError) as info:
            selectors.script_get_for_run(user=user, ref="d.py")
        assert (info.value.status, code(info)) == (409, "SCRIPT_DISABLED")
        bare = Script.objects.create(name="bare.py", logical_path="bare.py", owner=user)
        with pytest.raises(ApplicationError) as info:
            selectors.script_get_for_run(user=user, ref=bare.pk)
        assert (info.value.status, code(info)) == (409, "SCRIPT_HAS_NO_VERSION")


@pytest.mark.django_db
class TestCommandParameters:
    @pytest.fixture
    def version(self, user, upload):
        version = upload(user, "cmd.py", "import sys\nprint(sys.argv)\n")
        script = version.script
        add = ScriptParameter.objects.create
        add(script=script, name="source", required=True, position=0, help="Input name", type="file")
        add(
            script=script,
            name="limit",
            type="integer",
            flag="--limit",
            minimum=1,
            maximum=50,
            default=10,
            position=1,
        )
        add(script=script, name="format", flag="--format", choices=["csv", "json"], position=2)
        add(script=script, name="verbose", type="boolean", flag="--verbose", position=3)
        add(script=script, name="tag", pattern="^[a-z]+$", position=4)
        add(script=script, name="ratio", type="number", flag="-r", position=5)
        return version

    def test_schema_from_declared_parameters(self, version):
        assert version.kind == "command"
        schema = selectors.script_version_schema(version=version)
        assert schema["required"] == ["source"]
        assert schema["additionalProperties"] is False
        props = schema["properties"]
        assert props["source"] == {"type": "string", "description": "Input name"}
        assert props["limit"] == {"type": "integer", "minimum": 1, "maximum": 50, "default": 10}
        assert props["format"] == {"type": "string", "enum": ["csv", "json"]}
        assert props["verbose"] == {"type": "boolean"}
        assert props["tag"] == {"type": "string", "pattern": "^[a-z]+$"}
        assert list(props) == ["source", "limit", "format", "verbose", "tag", "ratio"]

    def test_schema_validates_with_jsonschema(self, version):
        import jsonschema

        schema = selectors.script_version_schema(version=version)
        jsonschema.validate({"source": "in.csv", "limit": 5}, schema)
        for bad in (
            {},
            {"source": "a", "limit": 0},
            {"source": "a", "format": "xml"},
            {"source": "a", "tag": "UP"},
            {"source": "a", "extra": 1},
        ):
            with pytest.raises(jsonschema.ValidationError):
                jsonschema.validate(bad, schema)

    def test_argv_from_inputs(self, version):
        argv = selectors.script_version_argv(
            version=version,
            inputs={
                "source": "in.csv",
                "format": "json",
                "verbose": True,
                "tag": "x",
                "ratio": 2.0,
            },
        )
        assert argv == ["in.csv", "--limit", "10", "--format", "json", "--verbose", "x", "-r", "2"]
        assert selectors.script_version_argv(
            version=version, inputs={"source": "a b", "verbose": False, "limit": 3}
        ) == ["a b", "--limit", "3"]

    def test_schema_follows_current_parameters(self, version):
        ScriptParameter.objects.filter(name="tag").delete()
        assert "tag" not in selectors.script_version_schema(version=version)["properties"]

    def test_function_script_schema_and_empty_argv(self, user, upload):
        version = upload(user, "f.py", HELLO)
        assert selectors.script_version_schema(version=version) == version.input_schema
        assert selectors.script_version_argv(version=version, inputs={"name": "x"}) == []

    def test_parameterless_main_is_a_function_script_that_takes_no_inputs(self, user, upload):
        import jsonschema

        version = upload(user, "p.py", "def main() -> dict:\n    return {'n': 1}\n")
        assert (version.kind, version.call_style) == ("function", "kwargs")
        schema = selectors.script_version_schema(version=version)
        jsonschema.validate({}, schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"x": 1}, schema)
        assert selectors.script_version_argv(version=version, inputs={}) == []

    def test_parameterless_main_run_by_its_main_block_stays_a_command(self, user, upload):
        source = "import sys\ndef main():\n    return 0\n\nif __name__ == '__main__':\n"
        version = upload(user, "c.py", source + "    sys.exit(main())\n")
        assert (version.kind, version.call_style) == ("command", "argv")
        version = upload(user, "e.py", "def main():\n    return 0\n\nexit(main())\n")
        assert (version.kind, version.call_style) == ("command", "argv")


@pytest.mark.django_db
def test_version_requirements_merge_extras(user, upload):
    version = upload(user, "r.py", "# Requirements: pandas>=2\nimport yaml\n")
    Script.objects.filter(pk=version.script_id).update(
        extra_requirements=["requests>=2", "PANDAS", "pyyaml<7"]
    )
    version = ScriptVersion.objects.get(pk=version.pk)
    assert selectors.script_version_requirements(version=version) == [
        "pandas>=2",
        "PyYAML",
        "requests>=2",
    ]


@pytest.mark.django_db
def test_script_can_edit(user, other_user, staff_user, make_user):
    script = baker.make(Script, owner=user, name="x.py", logical_path="x.py")
    assert permissions.script_can_edit(user=user, script=script)
    assert permissions.script_can_edit(user=staff_user, script=script)
    assert not permissions.script_can_edit(user=other_user, script=script)
    user.is_active = False
    assert not permissions.script_can_edit(user=user, script=script)
