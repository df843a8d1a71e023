#!/usr/bin/env python3
"""Check that every line of the given files is at most --width characters long;
the exit code is the number of files with long lines (0: all fine)."""

import sys


def check(path, width):
    bad = 0
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if len(line.rstrip("\n")) > width:
                print(f"{path}:{number}: {len(line.rstrip())} > {width}")
                bad += 1
    return bad


def main():
    args = sys.argv[1:]
    width = 20
    if args[:1] == ["--width"]:
        width, args = int(args[1]), args[2:]
    failed = sum(1 for path in args if check(path, width))
    print(f"{len(args)} files checked, {failed} with long lines")
    return failed


exit(main())
