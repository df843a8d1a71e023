"""Requirements from PEP 723, '# Requirements:' comments and imports."""

from scripts.inspection import inspect_source


def reqs(source: str, filename: str = "job.py") -> list[str]:
    return inspect_source(source, filename=filename).requirements


def test_pep723_dependencies_with_specifiers():
    source = (
        "# /// script\n"
        '# requires-python = ">=3.11"\n'
        "# dependencies = [\n"
        '#   "humanize>=4.9",\n'
        '#   "requests[socks]>=2,<3",\n'
        "# ]\n"
        "# ///\n"
        "import humanize\n"
    )
    assert reqs(source) == ["humanize>=4.9", "requests[socks]>=2,<3"]


def test_invalid_pep723_toml_is_a_warning_not_an_error():
    result = inspect_source("# /// script\n# dependencies = [\n# ///\n", filename="j.py")
    assert result.requirements == []
    assert any("TOML" in w for w in result.warnings)


def test_requirements_comment_with_specifiers():
    assert reqs("# Requirements: pandas>=2,<3, tabulate, attrs==23.1\n") == [
        "pandas>=2,<3",
        "tabulate",
        "attrs==23.1",
    ]


def test_imports_are_mapped_and_stdlib_excluded():
    source = (
        "import os, sys, json, csv\nimport yaml\nfrom PIL import Image\nimport cv2\n"
        "from sklearn.linear_model import LinearRegression\nfrom bs4 import BeautifulSoup\n"
        "import psycopg2.extras\nimport MySQLdb\nimport numpy as np\nfrom collections import abc\n"
        "def f():\n    import requests\n"
    )
    assert reqs(source) == [
        "beautifulsoup4",
        "opencv-python-headless",
        "PyMySQL",
        "numpy",
        "pillow",
        "psycopg2-binary",
        "requests",
        "scikit-learn",
        "PyYAML",
    ]


def test_relative_own_future_provided_and_optional_imports_are_not_requirements():
    source = (
        "from __future__ import annotations\nfrom . import helpers\nfrom .lib import x\n"
        "import job\nimport scriptorium_progress\n"
        "try:\n    import ujson as json\nexcept ImportError:\n    import json\n"
    )
    result = inspect_source(source, filename="job.py")
    assert result.requirements == []
    assert any("ujson" in w for w in result.warnings)


def test_declared_forms_win_over_imports_and_duplicates_collapse():
    source = (
        '# /// script\n# dependencies = ["Pillow>=10"]\n# ///\n'
        "# Requirements: pyyaml==6.0.1, pillow\n"
        "from PIL import Image\nimport yaml\n"
    )
    assert reqs(source) == ["Pillow>=10", "pyyaml==6.0.1"]


def test_invalid_requirement_strings_are_dropped_with_a_warning():
    result = inspect_source("# Requirements: ok-pkg, ???\n", filename="j.py")
    assert result.requirements == ["ok-pkg"]
    assert any("???" in w for w in result.warnings)
