"""Monthly sales by region: a summary table, a chart, and the figures as the result."""

import matplotlib.pyplot as plt
import pandas as pd


def main() -> dict:
    sales = pd.read_csv("sales.csv", parse_dates=["date"])
    sales["month"] = sales["date"].dt.to_period("M").astype(str)
    table = sales.pivot_table(index="month", columns="region", values="amount", aggfunc="sum")
    table.to_csv("by_month.csv")

    ax = table.plot(kind="bar", figsize=(6, 4), title="Sales by month")
    ax.set_ylabel("amount")
    plt.tight_layout()
    plt.savefig("sales.png", dpi=80)
    print(f"{len(sales)} sales, {len(table)} months")

    totals = sales.groupby("region")["amount"].sum()
    return {"total": float(totals.sum()), "by_region": totals.round(2).to_dict()}
