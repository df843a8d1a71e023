"""Secrets reach a run as environment variables and never its log, progress or error."""

import pytest

from executions.runner.masking import MASK, Masker, mask_text

pytestmark = pytest.mark.slow

SECRET = "s3cr3t-Value-42!"


def test_a_secret_reaches_the_script_and_is_masked_however_it_is_printed(backend):
    from executions.runner import run_script
    from tests.executions.runner.conftest import base_spec

    source = """
import os, sys, time
from scriptorium_progress import report
def main():
    token = os.environ["API_TOKEN"]
    print("whole:", token, flush=True)
    for ch in token:  # one character per write: the value arrives split
        sys.stdout.write(ch)
        sys.stdout.flush()
        time.sleep(0.002)
    print(flush=True)
    report(50, f"using {token}")
    raise RuntimeError(f"failed with {token}")
"""
    spec = base_spec(source, run_id="secret", filename="s.py", secrets={"API_TOKEN": SECRET})
    log, progress = [], []
    with run_script(spec, on_log=log.append, on_progress=lambda p, m: progress.append(m)) as out:
        outcome = out
    text = "".join(log)
    assert outcome.error_code == "SCRIPT_ERROR", text
    assert SECRET not in text and text.count(MASK) >= 3, text
    assert progress == [f"using {MASK}"]
    assert SECRET not in outcome.error_message and MASK in outcome.error_message


def test_masker_holds_back_only_what_may_start_a_secret():
    seen = []
    masker = Masker(seen.append, ["abcdef"])
    masker("hello ab")
    assert seen == ["hello "]  # "ab" may start the secret
    masker("cdef and abx")
    masker("yz")
    masker.flush()
    assert "".join(seen) == f"hello {MASK} and abxyz"
    assert mask_text("a abcdef b", ["abcdef", "ab"]) == f"a {MASK} b"  # short values ignored
