"""A command script with declared parameters: count words in a text.

Parameters (declared in the admin): text (positional), --top N, --lower.
"""

import argparse
from collections import Counter

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("text")
parser.add_argument("--top", type=int, default=3)
parser.add_argument("--lower", action="store_true")
args = parser.parse_args()

text = args.text.lower() if args.lower else args.text
counts = Counter(text.split())
for word, count in counts.most_common(args.top):
    print(f"{count:4d}  {word}")
