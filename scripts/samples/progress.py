"""Reports progress (0-100 with a message) while it works."""

import time

try:
    from scriptorium_progress import report  # put on the path by the runner
except ImportError:  # plain interpreter: print instead

    def report(percent: int, message: str = "") -> None:
        print(f"[{percent:3d}%] {message}")


def main(steps: int = 5, delay: float = 0.2) -> dict:
    """Count to ``steps``, reporting progress.

    Args:
        steps: How many steps (1-100).
        delay: Seconds per step.
    """
    steps = max(1, min(steps, 100))
    for step in range(1, steps + 1):
        time.sleep(max(0.0, min(delay, 5.0)))
        report(step * 100 // steps, f"step {step} of {steps}")
    return {"steps": steps}


if __name__ == "__main__":
    print(main())
