"""Weekly report: a CSV of the numbers and an HTML page to mail around."""

import csv
import datetime
import html
import statistics

ROWS = [
    ("Alice", 12, 3.5),
    ("Bob", 7, 4.25),
    ("Chloé <admin>", 15, 2.0),
    ("Dmitri", 9, 5.0),
]


def main(title: str = "Weekly report", week: datetime.date = datetime.date(2024, 1, 1)) -> dict:
    """Write report.csv and report.html.

    Args:
        title: The page title.
        week: Monday of the reported week.
    """
    with open("report.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["name", "tickets", "hours"])
        writer.writerows(ROWS)
    cells = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{tickets}</td><td>{hours:.2f}</td></tr>"
        for name, tickets, hours in ROWS
    )
    with open("report.html", "w", encoding="utf-8") as fh:
        fh.write(
            f"<!doctype html><title>{html.escape(title)}</title>"
            f"<h1>{html.escape(title)}, week {week.isocalendar().week}</h1>"
            f"<table>{cells}</table>"
        )
    tickets = [row[1] for row in ROWS]
    return {"week": week.isoformat(), "tickets": sum(tickets), "median": statistics.median(tickets)}


if __name__ == "__main__":
    print(main())
