"""Writes a CSV, a JSON summary and a PNG chart (standard library only) in its
working directory; the files become the run's artifacts."""

import csv
import json
import struct
import zlib


def png(width: int, height: int, pixel) -> bytes:
    """A real RGB PNG made with zlib + struct; ``pixel(x, y) -> (r, g, b)``."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(width)) for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


sales = [("Mon", 12), ("Tue", 18), ("Wed", 9), ("Thu", 22), ("Fri", 15)]
with open("sales.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["day", "sales"])
    writer.writerows(sales)

with open("summary.json", "w") as f:
    json.dump({"total": sum(n for _, n in sales), "best_day": max(sales, key=lambda s: s[1])[0]},
              f, indent=2)

bar_width, height, top = 20, 100, max(n for _, n in sales)


def pixel(x, y):
    index, offset = divmod(x, bar_width)
    value = sales[index][1]
    if offset < bar_width - 4 and y >= height - value * height // top:
        return (40, 110, 200)
    return (255, 255, 255)


with open("chart.png", "wb") as f:
    f.write(png(bar_width * len(sales), height, pixel))

print("Wrote sales.csv, summary.json and chart.png")
