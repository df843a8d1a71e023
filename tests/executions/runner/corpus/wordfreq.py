"""Count the most frequent words of a text file (a command-line tool)."""

import argparse
import collections
import re
import sys


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", help="the text file to read")
    parser.add_argument("-n", "--top", type=int, default=3, help="how many words")
    parser.add_argument("-o", "--output", help="write the counts to this CSV file")
    parser.add_argument("--ignore-case", action="store_true")
    return parser.parse_args(argv)


def main():
    args = parse_args()
    with open(args.path, encoding="utf-8") as fh:
        text = fh.read()
    if args.ignore_case:
        text = text.lower()
    counts = collections.Counter(re.findall(r"[\w']+", text))
    top = counts.most_common(args.top)
    for word, n in top:
        print(f"{n:5d} {word}")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write("word,count\n")
            fh.writelines(f"{word},{n}\n" for word, n in top)
    print(f"{sum(counts.values())} words in {args.path}", file=sys.stderr)


if __name__ == "__main__":
    main()
