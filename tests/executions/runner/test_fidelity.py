"""Ordinary scripts behave as under ``python script.py`` (issue 9).

Each script of ``corpus/`` is written the way people write scripts on their own machine
(pandas and matplotlib, a report, argparse, ``exit(main())``, ``sys.exit("msg")``,
multiprocessing, logging). Each test inspects it as an upload would (kind, call style,
requirements), runs it through the real runner on every sandbox backend, and checks
the outcome, the log and the files it leaves.
"""

import csv
import io
import json
from pathlib import Path

import pytest

from executions.runner import InputFile
from scripts.inspection import inspect_source

pytestmark = pytest.mark.slow

CORPUS = Path(__file__).resolve().parent / "corpus"


def input_file(name: str, data: bytes | str) -> InputFile:
    raw = data.encode() if isinstance(data, str) else data
    return InputFile(name, lambda: io.BytesIO(raw))


@pytest.fixture
def run_corpus(run, runner_data_dir):
    """``run_corpus(name, kind, **options)``: inspect corpus/<name> as an upload would,
    check its kind, run it with the call style and requirements inspection found, and
    check what no run may show: a host folder, the harness, bytecode among its files."""

    def go(name: str, kind: str, **options):
        source = (CORPUS / name).read_text()
        found = inspect_source(source, filename=name)
        assert found.kind == kind, (found.kind, found.call_style)
        r = run(
            source,
            filename=name,
            call_style=found.call_style,
            requirements=found.requirements,
            **options,
        )
        assert str(runner_data_dir) not in r.log + r.error_message, r.log
        assert "_scriptorium_harness" not in r.log
        assert not [f for f in r.files if "__pycache__" in f], r.files
        return r

    return go


def output(r) -> str:
    """The log without the runner's own lines (environment builds, notes)."""
    return "".join(
        line for line in r.log.splitlines(keepends=True) if not line.startswith("[scriptorium]")
    )


SALES = "date,region,amount\n" + "".join(
    f"2024-{month:02d}-{day:02d},{region},{amount}\n"
    for month in (1, 2, 3)
    for day, region, amount in ((3, "north", 10.5), (9, "south", 20.25), (17, "north", 4))
)


def test_data_analysis_with_pandas_and_matplotlib(run_corpus, backend):
    """A parameterless main() with nothing calling it: the runner calls it (pandas and
    matplotlib come from an environment built for the script's imports)."""
    r = run_corpus(
        "analysis.py",
        "function",
        input_files=[input_file("sales.csv", SALES)],
        timeout_seconds=300,
    )
    assert r.status == "succeeded", r.log
    assert r.result == {"total": 104.25, "by_region": {"north": 43.5, "south": 60.75}}
    assert "9 sales, 3 months\n" in output(r)
    category, png = r.files["sales.png"]
    assert category == "image" and png.startswith(b"\x89PNG\r\n\x1a\n")
    rows = list(csv.reader(io.StringIO(r.files["by_month.csv"][1].decode())))
    assert rows == [
        ["month", "north", "south"],
        ["2024-01", "14.5", "20.25"],
        ["2024-02", "14.5", "20.25"],
        ["2024-03", "14.5", "20.25"],
    ]
    # HOME is outside the collected folder (the sandbox's part: sandbox.py / run.py), so
    # matplotlib's and fontconfig's caches (.cache/matplotlib, .cache/fontconfig,
    # .config/matplotlib) are not among the outputs.
    assert sorted(r.files) == ["by_month.csv", "sales.png"], sorted(r.files)


def test_report_generation_writes_csv_and_html(run_corpus, backend):
    """A typed main with a __main__ block: a function script; the block does not run."""
    r = run_corpus(
        "weekly_report.py",
        "function",
        inputs={"title": "Support <team>", "week": "2024-03-04"},
    )
    assert r.status == "succeeded", r.log
    assert r.result == {"week": "2024-03-04", "tickets": 43, "median": 10.5}
    assert output(r) == ""  # the __main__ block's print did not run
    assert r.files["report.csv"] == (
        "data",
        b"name,tickets,hours\r\nAlice,12,3.5\r\nBob,7,4.25\r\n"
        + "Chloé <admin>,15,2.0\r\n".encode()
        + b"Dmitri,9,5.0\r\n",
    )
    category, page = r.files["report.html"]
    assert category == "document"
    assert "<h1>Support &lt;team&gt;, week 10</h1>" in page.decode()
    assert "<td>Chloé &lt;admin&gt;</td>" in page.decode()


POEM = "The cat saw the dog.\nThe dog saw THE cat, and the bird saw nothing.\n"


def test_command_line_tool_with_argparse(run_corpus, backend):
    r = run_corpus(
        "wordfreq.py",
        "command",
        argv=["poem.txt", "--top", "2", "-o", "top.csv", "--ignore-case"],
        input_files=[input_file("poem.txt", POEM)],
    )
    assert (r.status, r.exit_code, r.result) == ("succeeded", 0, None), r.log
    assert output(r) == "    5 the\n    3 saw\n15 words in poem.txt\n"
    assert r.files == {"top.csv": ("data", b"word,count\nthe,5\nsaw,3\n")}


def test_argparse_help_and_usage_errors(run_corpus):
    r = run_corpus("wordfreq.py", "command", argv=["--help"])
    assert (r.status, r.exit_code) == ("succeeded", 0), r.log
    assert output(r).startswith("usage: wordfreq.py [-h] [-n TOP] [-o OUTPUT] [--ignore-case]")
    assert "the text file to read" in r.log
    r = run_corpus("wordfreq.py", "command", argv=[])
    assert (r.status, r.exit_code, r.error_code) == ("failed", 2, "SCRIPT_ERROR")
    assert "wordfreq.py: error: the following arguments are required: path" in r.log
    r = run_corpus("wordfreq.py", "command", argv=["missing.txt"])
    assert (r.status, r.exit_code) == ("failed", 1)
    assert r.error_message.startswith("FileNotFoundError: [Errno 2] No such file or directory")
    assert 'File "wordfreq.py", line 20, in main' in r.log
    assert output(r).startswith('Traceback (most recent call last):\n  File "wordfreq.py"')


def test_script_ending_with_exit_main(run_corpus, backend):
    """``exit(main())`` at module level: a command script whose exit code is main's."""
    files = [
        input_file("short.txt", "fine\nshort lines\n"),
        input_file("long.txt", "this line is far too long for the limit\nok\n"),
        input_file("wide.txt", "x" * 30 + "\n"),
    ]
    r = run_corpus("checker.py", "command", argv=["short.txt"], input_files=files)
    assert (r.status, r.exit_code, output(r)) == (
        "succeeded",
        0,
        "1 files checked, 0 with long lines\n",
    ), r.log
    r = run_corpus(
        "checker.py", "command", argv=["short.txt", "long.txt", "wide.txt"], input_files=files
    )
    assert (r.status, r.exit_code, r.error_code) == ("failed", 2, "SCRIPT_ERROR"), r.log
    assert r.error_message == "The script exited with code 2."
    assert output(r) == (
        "long.txt:1: 39 > 20\nwide.txt:1: 30 > 20\n3 files checked, 2 with long lines\n"
    )


def test_sys_exit_with_a_message(run_corpus, backend):
    r = run_corpus("convert.py", "command")
    assert (r.status, r.exit_code, r.error_code) == ("failed", 1, "SCRIPT_ERROR")
    assert output(r) == "usage: convert.py INPUT.json [OUTPUT.csv]\n"
    people = json.dumps([{"name": "Ann", "age": 31}, {"name": "Bo", "age": 4}])
    r = run_corpus(
        "convert.py",
        "command",
        argv=["people.json"],
        input_files=[input_file("people.json", people), input_file("empty.json", "[]")],
    )
    assert (r.status, r.exit_code) == ("succeeded", 0), r.log
    assert output(r) == "wrote 2 records to people.csv\n"
    assert r.files == {"people.csv": ("data", b"name,age\r\nAnn,31\r\nBo,4\r\n")}
    r = run_corpus(
        "convert.py", "command", argv=["e.json"], input_files=[input_file("e.json", "[]")]
    )
    assert (r.exit_code, output(r)) == (1, "e.json: no records\n")


def test_multiprocessing_threads_and_subprocess(run_corpus, backend):
    """spawn re-runs the script in children (as __mp_main__) through sys.executable;
    fork, threads and a subprocess of sys.executable work as on any machine."""
    r = run_corpus("primes.py", "command", timeout_seconds=120)
    assert (r.status, r.exit_code) == ("succeeded", 0), r.log
    assert output(r) == "spawn 1229, fork 1229, threads 1229, python 3\n"
    assert r.files == {}


def test_logging_goes_to_the_log_and_to_its_file(run_corpus, backend):
    r = run_corpus("nightly.py", "function", inputs={"batches": 2})
    assert r.status == "succeeded", r.log
    assert r.result == {"done": 3, "seconds": True}
    text = output(r)
    assert text.startswith(
        "INFO nightly: batch 1 of 2\nINFO nightly: batch 2 of 2\n"
        "WARNING nightly: batch 0 was empty\nERROR nightly: lookup failed\n"
        "Traceback (most recent call last):\n"
        '  File "nightly.py", line 22, in main\n'
    ), text
    assert "not shown" not in text
    category, logged = r.files["nightly.log"]
    assert category == "log"
    assert logged.decode().splitlines()[:4] == [
        "INFO batch 1 of 2",
        "INFO batch 2 of 2",
        "WARNING batch 0 was empty",
        "ERROR lookup failed",
    ]


def test_a_library_error_shows_the_script_and_the_library_but_no_host_folder(
    run, backend, runner_data_dir
):
    """Frames in the environment's packages are shown under ``<env>/`` (on the rlimit
    backend their real path is in the server's data folder)."""
    r = run(
        "import pandas as pd\n\ndef main():\n    return pd.DataFrame({'a': [1]})['b']\n",
        filename="lookup.py",
        requirements=["matplotlib", "pandas"],  # the environment of the analysis test
        timeout_seconds=300,
    )
    assert (r.status, r.error_message) == ("failed", "KeyError: 'b'"), r.log
    last = r.log.rsplit("Traceback (most recent call last):\n", 1)[1]  # pandas chains
    frames = [line.strip() for line in last.splitlines() if line.strip().startswith("File ")]
    assert frames[0] == 'File "lookup.py", line 4, in main', r.log
    assert frames[1].startswith('File "<env>/lib/python3.'), r.log
    assert "site-packages/pandas/core/frame.py" in frames[1]
    assert str(runner_data_dir) not in r.log and "harness" not in r.log
