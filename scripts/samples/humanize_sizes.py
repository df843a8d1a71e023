# /// script
# requires-python = ">=3.11"
# dependencies = ["humanize>=4"]
# ///
"""A PEP 723 dependency: the runner installs humanize in the script's environment."""

import humanize


def main(sizes: list[int]) -> dict:
    """Turn byte counts into human-readable sizes.

    Args:
        sizes: Sizes in bytes.
    """
    return {"sizes": [humanize.naturalsize(n) for n in sizes]}


if __name__ == "__main__":
    print(main([1024, 5_000_000]))
