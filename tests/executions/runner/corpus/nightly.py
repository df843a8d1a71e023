"""A nightly job that logs what it does (to the console and to a log file)."""

import logging
import time

log = logging.getLogger(__name__)


def main(batches: int = 3) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    file_handler = logging.FileHandler("nightly.log")
    file_handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logging.getLogger().addHandler(file_handler)
    started = time.monotonic()
    done = 0
    for batch in range(1, batches + 1):
        log.info("batch %d of %d", batch, batches)
        done += batch
    log.warning("batch %d was empty", 0)
    log.debug("not shown")
    try:
        {}["missing"]
    except KeyError:
        log.exception("lookup failed")
    return {"done": done, "seconds": round(time.monotonic() - started, 3) >= 0}
