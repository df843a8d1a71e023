"""Convert a JSON list of records to CSV; refuses to run without an input file."""

import csv
import json
import os
import sys

if len(sys.argv) < 2:
    sys.exit(f"usage: {os.path.basename(sys.argv[0])} INPUT.json [OUTPUT.csv]")

source = sys.argv[1]
target = sys.argv[2] if len(sys.argv) > 2 else os.path.splitext(source)[0] + ".csv"
with open(source, encoding="utf-8") as fh:
    records = json.load(fh)
if not records:
    sys.exit(f"{source}: no records")
with open(target, "w", newline="", encoding="utf-8") as fh:
    writer = csv.DictWriter(fh, fieldnames=list(records[0]))
    writer.writeheader()
    writer.writerows(records)
print(f"wrote {len(records)} records to {target}")
