"""Key safety: every bad form is refused with INVALID_KEY; no key escapes the root."""

import re

import pytest

from config.errors import ApplicationError
from storage.keys import (
    clean_original_name,
    extension_of,
    key_generate,
    key_validate,
    prefix_validate,
)

BAD_KEYS = {
    "parent": "../etc/passwd",
    "parent inside": "uploads/../../etc/passwd",
    "parent at end": "uploads/..",
    "dot segment": "uploads/./a.txt",
    "absolute": "/etc/passwd",
    "double slash absolute": "//server/share",
    "backslash": "uploads\\..\\a.txt",
    "windows absolute": "C:\\Windows\\system.ini",
    "nul": "uploads/a\x00.txt",
    "newline": "uploads/a\n.txt",
    "tab": "uploads/a\t.txt",
    "delete char": "uploads/a\x7f.txt",
    "empty segment": "uploads//a.txt",
    "trailing slash": "uploads/a/",
    "hidden": "uploads/.htaccess",
    "space": "uploads/a b.txt",
    "unicode": "uploads/ä.txt",
    "colon": "c:/a.txt",
    "over-long segment": "u/" + "a" * 101,
    "over-long key": "/".join(["abcdefghij" * 5] * 11),
    "too deep": "/".join(["a"] * 17),
    "empty": "",
}


@pytest.mark.parametrize("key", BAD_KEYS.values(), ids=BAD_KEYS.keys())
def test_bad_keys_are_refused(key):
    with pytest.raises(ApplicationError) as info:
        key_validate(key)
    assert info.value.code == "INVALID_KEY" and info.value.status == 400
    assert info.value.details["key"]


@pytest.mark.parametrize("prefix", [k for k in BAD_KEYS.values() if k != "uploads/a/"])
def test_bad_prefixes_are_refused(prefix):
    with pytest.raises(ApplicationError) as info:
        prefix_validate(prefix)
    assert info.value.code == "INVALID_KEY"


@pytest.mark.parametrize("value", [None, 5, b"uploads"])
def test_non_strings_are_refused(value):
    with pytest.raises(ApplicationError):
        key_validate(value)


def test_good_keys_pass_unchanged():
    for key in ["a", "uploads/2024-01/report_v2.final.csv", "executions/12/out-1.json"]:
        assert key_validate(key) == key


def test_prefix_normalisation():
    assert prefix_validate("uploads/alice/") == "uploads/alice"
    assert prefix_validate("uploads") == "uploads"


def test_prefix_leaves_room_for_the_generated_name(settings):
    settings.STORAGE_KEY_MAX_LENGTH = 100
    prefix_validate("p" * 55)
    with pytest.raises(ApplicationError):
        prefix_validate("p" * 57)
    key = key_generate(prefix="p" * 55, original_name="x.abcdefghij")
    assert len(key) <= 100 and key_validate(key) == key


def test_generated_key_never_carries_the_clients_name():
    key = key_generate(prefix="uploads", original_name="../../etc/passwd.TXT")
    assert re.fullmatch(r"uploads/[0-9a-f]{32}\.txt", key)
    assert key_generate(prefix="u", original_name="x") != key_generate(
        prefix="u", original_name="x"
    )


@pytest.mark.parametrize(
    ("name", "ext"),
    [
        ("a.tar.gz", "gz"),
        ("README", ""),
        (".bashrc", ""),
        ("x.", ""),
        ("x.<script>", ""),
        ("x.verylongextension", ""),
        ("dir\\file.PNG", "png"),
    ],
)
def test_extension_of(name, ext):
    assert extension_of(name) == ext


def test_clean_original_name():
    assert clean_original_name("C:\\Users\\me\\report.pdf") == "report.pdf"
    assert clean_original_name("../../a\x00b\n.txt") == "ab.txt"
    assert clean_original_name("") == "file"
    long = clean_original_name("n" * 300 + ".csv")
    assert len(long) == 255 and long.endswith(".csv")
