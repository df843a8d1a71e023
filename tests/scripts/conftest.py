"""Fixtures of the script library tests."""

import pytest
from django.contrib.auth.models import Group

from scripts import services


@pytest.fixture
def upload(db):
    """``upload(user, name, source, folder=None, **kw)`` -> the ScriptVersion."""

    def make(user, name: str, source: str | bytes, folder=None, **kwargs):
        content = source.encode() if isinstance(source, str) else source
        return services.script_upload(
            user=user, file_name=name, content=content, folder=folder, **kwargs
        )

    return make


@pytest.fixture
def folder(user):
    return services.folder_create(user=user, name="reports")


@pytest.fixture
def secret_group(db):
    return Group.objects.create(name="finance")


@pytest.fixture
def secret_folder(staff_user, secret_group):
    """A folder only the "finance" group (and staff) may see, with a subfolder."""
    folder = services.folder_create(user=staff_user, name="secret")
    services.folder_share(user=staff_user, folder=folder, read_groups=[secret_group.name])
    return folder
