"""The simulation report as ONE self-contained HTML page, with plotly charts.

plotly.js is inlined once (no script or stylesheet is fetched), so the page
opens in any browser offline. Charts: points per month, liability over time,
tier distribution over time, points per rule; with a second program, each
chart shows both and the page adds the side-by-side table.
"""

from __future__ import annotations

import html
import re
from decimal import Decimal

import plotly.graph_objects as go
import plotly.io as pio

from ..engine.outcome import fmt
from .report import _d

NUMBER = re.compile(r"-?\d+(\.\d+)?")

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", "PingFang SC", "Microsoft YaHei", sans-serif;
       margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
th, td { padding: .25rem .7rem; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.up { color: #1f4e9c; } .down { color: #b35900; } .muted { color: #777; }
"""


def _cell(value) -> str:
    """A number with thousands separators (as in the terminal), anything else as text, escaped."""
    if isinstance(value, int) or (isinstance(value, str) and NUMBER.fullmatch(value)):
        return html.escape(fmt(Decimal(str(value))))
    return html.escape(str(value))


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _months(figures: dict, key: str) -> tuple[list[str], list[float]]:
    months = figures["monthly"]
    return [m["month"] for m in months], [float(_d(m[key])) for m in months]


def _charts(runs: list[tuple[str, dict]]) -> list[tuple[str, go.Figure]]:
    charts = []
    fig = go.Figure()
    for label, f in runs:
        for key in ("issued", "redeemed", "expired"):
            x, y = _months(f, key)
            fig.add_bar(x=x, y=y, name=f"{key} ({label})" if len(runs) > 1 else key)
    fig.update_layout(title="Points per month", barmode="group", xaxis_title="month", yaxis_title="points")
    charts.append(("points-per-month", fig))

    fig = go.Figure()
    for label, f in runs:
        value = _d(f["points"]["point_value"])
        days = [s["day"] for s in f["snapshots"]]
        fig.add_scatter(
            x=days,
            y=[float(_d(s["outstanding"]) * value) for s in f["snapshots"]],
            mode="lines+markers",
            name=f"liability ({label})" if len(runs) > 1 else "liability",
        )
    currency = runs[0][1]["points"]["currency"]
    fig.update_layout(title=f"Outstanding points liability ({currency})", xaxis_title="month end", yaxis_title=currency)
    charts.append(("liability", fig))

    for label, f in runs:
        fig = go.Figure()
        days = [s["day"] for s in f["snapshots"]]
        tiers = list(dict.fromkeys(t for s in f["snapshots"] for t in s["tiers"]))
        order = [t for t in f["tiers"]["final"] if t in tiers] + [t for t in tiers if t not in f["tiers"]["final"]]
        for tier in order:
            fig.add_scatter(
                x=days, y=[s["tiers"].get(tier, 0) for s in f["snapshots"]], name=tier, stackgroup="tiers", mode="lines"
            )
        title = "Members per tier over time" + (f" ({label})" if len(runs) > 1 else "")
        fig.update_layout(title=title, xaxis_title="month end", yaxis_title="members")
        charts.append((f"tiers-{len(charts)}", fig))

    fig = go.Figure()
    for label, f in runs:
        months = [m["month"] for m in f["monthly"]]
        suffix = f" ({label})" if len(runs) > 1 else ""
        fig.add_bar(x=months, y=[m["upgrades"] for m in f["monthly"]], name="upgrades" + suffix)
        fig.add_bar(x=months, y=[-m["downgrades"] for m in f["monthly"]], name="downgrades" + suffix)
    fig.update_layout(title="Tier changes per month", barmode="relative", xaxis_title="month", yaxis_title="members")
    charts.append(("tier-changes", fig))

    fig = go.Figure()
    for label, f in runs:
        rules = [r for r in f["rules"] if _d(r["points"])]
        fig.add_bar(
            y=[r["rule"] for r in rules],
            x=[float(_d(r["points"])) for r in rules],
            orientation="h",
            name=label,
        )
    fig.update_layout(title="Points per rule", barmode="group", xaxis_title="points", showlegend=len(runs) > 1)
    charts.append(("rules", fig))
    return charts


def _summary(f: dict) -> str:
    p = f["points"]
    rows = [
        ["points issued", p["issued"]],
        ["points reversed by refunds", p["reversed"]],
        ["points redeemed", p["redeemed"]],
        ["points expired", p["expired"]],
        ["points outstanding", p["outstanding"]],
        [f"liability at {p['point_value']} {p['currency']} a point", f"{p['liability']} {p['currency']}"],
        ["tier upgrades / downgrades", f"{f['tiers']['upgrades']} / {f['tiers']['downgrades']}"],
        ["messages queued", f["messages"]],
    ]
    out = _table(["figure", "value"], rows)
    out += "<h3>Rules</h3>" + _table(
        ["rule", "hits", "points", "reversed"], [[r["rule"], r["hits"], r["points"], r["reversed"]] for r in f["rules"]]
    )
    out += "<h3>Coupons</h3>" + _table(
        ["coupon", "issued", "redeemed", "void"],
        [[t, c["issued"], c["redeemed"], c["void"]] for t, c in f["coupons"].items()],
    )
    if f.get("rewards"):
        out += "<h3>Plugin rewards</h3>" + _table(
            ["reward", "events", "granted", "taken back by refunds"],
            [[k, r["count"], r["granted"], r["reversed"]] for k, r in f["rewards"].items()],
        )
    out += "<h3>Triggers fired</h3>" + _table(["trigger", "fired"], [[t, n] for t, n in f["triggers"].items()])
    out += "<h3>Members per tier at the end</h3>" + _table(
        ["tier", "members"], list(map(list, f["tiers"]["final"].items()))
    )
    out += "<h3>Top members by points earned</h3>" + _table(
        ["member", "name", "earned", "balance", "tier"],
        [[m["member"], m["name"] or "", m["earned"], m["balance"], m["tier"] or ""] for m in f["top_members"]],
    )
    return out


def _comparison(c: dict) -> str:
    def cls(text: str) -> str:
        value = Decimal(text)
        return "up" if value > 0 else "down" if value < 0 else "muted"

    rows = "".join(
        f"<tr><td>{html.escape(r['figure'])}</td><td>{_cell(r['a'])}</td><td>{_cell(r['b'])}</td>"
        f"<td class='{cls(r['difference'])}'>{_cell(r['difference'])}</td></tr>"
        for r in c["figures"]
    )
    out = (
        f"<table><thead><tr><th>figure</th><th>A</th><th>B</th><th>B - A</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    out += "<h3>Rules</h3>" + _table(
        ["rule", "hits A", "hits B", "points A", "points B", "B - A"],
        [[r["rule"], r["hits_a"], r["hits_b"], r["points_a"], r["points_b"], r["difference"]] for r in c["rules"]],
    )
    out += f"<h3>Members whose outcome changed most ({c['members_changed']} changed)</h3>" + _table(
        ["member", "earned A", "earned B", "B - A", "tier A", "tier B"],
        [
            [m["member"], m["earned_a"], m["earned_b"], m["difference"], m["tier_a"] or "", m["tier_b"] or ""]
            for m in c["members"]
        ],
    )
    return out


def render(figures: dict, other: dict | None = None, comparison: dict | None = None) -> str:
    """The whole page as text (UTF-8)."""
    runs = [("A", figures)] + ([("B", other)] if other is not None else [])
    prog = figures["program"]
    period = figures["period"]
    title = f"Simulation: {prog['name']}"
    if other is not None:
        title += f" vs {other['program']['name']}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='muted'>{period['from']} to {period['to']} ({period['days']} days), "
        f"{figures['members']['count']} members; program version {prog['version']}"
        + (f" (A) and {other['program']['version']} (B)" if other is not None else "")
        + "</p>",
    ]
    if comparison is not None:
        parts += ["<h2>A and B side by side</h2>", _comparison(comparison)]
    parts.append("<h2>Charts</h2>")
    first = True
    for name, fig in _charts(runs):
        fig.update_layout(height=420, margin={"l": 60, "r": 20, "t": 50, "b": 50}, template="plotly_white")
        parts.append(
            pio.to_html(
                fig,
                include_plotlyjs=first,
                full_html=False,
                div_id=f"chart-{name}",
                config={"displaylogo": False, "responsive": True},
            )
        )
        first = False
    for label, f in runs:
        heading = "Figures" + (f" ({label}: {f['program']['name']})" if other is not None else "")
        parts += [f"<h2>{html.escape(heading)}</h2>", _summary(f)]
    parts.append("</body></html>")
    return "\n".join(parts)
