#!/usr/bin/python3
"""Render bench results as an SVG bar chart (standard library only).

One panel per workload, one bar per server (same colour for a server in
every panel), each panel on its own y scale because the workloads differ by
orders of magnitude in requests/s.

    python3 bench/chart.py [bench/results/latest.json] [out.svg]
"""

import json
import math
import os
import sys
from xml.sax.saxutils import escape

PALETTE = {
    "ferrocorn-sync": "#c2410c",
    "ferrocorn-gthread": "#f59e0b",
    "gunicorn-sync": "#1d4ed8",
    "gunicorn-gthread": "#60a5fa",
    "granian": "#15803d",
    "uwsgi": "#7c3aed",
}
FALLBACK = ["#0f766e", "#be185d", "#4d7c0f", "#92400e", "#334155"]

PANEL_H = 300      # plot area height
TOP = 78           # title + legend
BOTTOM = 46        # workload label + axis
LEFT_AXIS = 52     # room for y tick labels
BAR_W = 26
BAR_GAP = 8
PANEL_PAD = 18


def nice_max(v):
    """A round number >= v to use as the top of an axis."""
    if v <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if step * exp >= v:
            return step * exp
    return 10 * exp


def short(v):
    if v == 0:
        return "0"
    if v >= 10000:
        return "%.0fk" % (v / 1000.0)
    if v >= 1000:
        return ("%.2f" % (v / 1000.0)).rstrip("0").rstrip(".") + "k"
    if v >= 10:
        return "%.0f" % v
    return "%.1f" % v


def write_chart(doc, path):
    summary = doc.get("summary", {})
    settings = doc.get("settings", {})
    order = settings.get("servers") or []
    servers = [s for s in order if any(s in rows for rows in summary.values())]
    for rows in summary.values():  # servers not in the configured order
        servers += [s for s in rows if s not in servers]
    colours = {}
    for i, s in enumerate(servers):
        colours[s] = PALETTE.get(s, FALLBACK[i % len(FALLBACK)])

    panels = [(wl, rows) for wl, rows in summary.items()]
    panel_ws = []
    for wl, rows in panels:
        n = max(1, len([s for s in servers if s in rows]))
        panel_ws.append(LEFT_AXIS + n * (BAR_W + BAR_GAP) + BAR_GAP + PANEL_PAD)
    width = max(480, sum(panel_ws) + 20)
    height = TOP + PANEL_H + BOTTOM

    out = []
    add = out.append
    add('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
        'viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif">'
        % (width, height, width, height))
    add('<rect width="100%" height="100%" fill="#ffffff"/>')
    meta = doc.get("meta", {})
    title = "Requests/s by workload (median of %s round(s), %s workers)" % (
        settings.get("rounds", "?"), settings.get("workers", "?"))
    add('<text x="10" y="22" font-size="16" font-weight="bold">%s</text>'
        % escape(title))
    sub = "%s CPUs, %s; higher is better; each panel has its own scale" % (
        meta.get("cpus", "?"), meta.get("finished", ""))
    add('<text x="10" y="40" font-size="11" fill="#555">%s</text>'
        % escape(sub))

    # legend
    x = 10
    for s in servers:
        add('<rect x="%d" y="52" width="12" height="12" fill="%s"/>'
            % (x, colours[s]))
        add('<text x="%d" y="62" font-size="12">%s</text>' % (x + 16, escape(s)))
        x += 16 + 7 * len(s) + 18

    base_y = TOP + PANEL_H
    x0 = 10
    for (wl, rows), pw in zip(panels, panel_ws):
        present = [s for s in servers if s in rows]
        vals = [rows[s].get("rps") or 0.0 for s in present]
        top = nice_max(max(vals) if vals else 1.0)
        ax = x0 + LEFT_AXIS
        # grid + y ticks
        for i in range(5):
            v = top * i / 4.0
            y = base_y - PANEL_H * i / 4.0
            add('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s" '
                'stroke-width="1"/>' % (ax, y, x0 + pw - PANEL_PAD, y,
                                        "#999" if i == 0 else "#e5e5e5"))
            add('<text x="%d" y="%.1f" font-size="10" text-anchor="end" '
                'fill="#555">%s</text>' % (ax - 4, y + 3, short(v)))
        # bars
        bx = ax + BAR_GAP
        for s, v in zip(present, vals):
            h = PANEL_H * v / top if top else 0
            add('<rect x="%d" y="%.1f" width="%d" height="%.1f" fill="%s">'
                '<title>%s %s: %.0f req/s</title></rect>'
                % (bx, base_y - h, BAR_W, h, colours[s], escape(wl),
                   escape(s), v))
            add('<text x="%.1f" y="%.1f" font-size="9" text-anchor="middle">'
                '%s</text>' % (bx + BAR_W / 2.0, base_y - h - 3, short(v)))
            bx += BAR_W + BAR_GAP
        if not present:
            add('<text x="%d" y="%d" font-size="11" fill="#999">no data</text>'
                % (ax + 6, base_y - 10))
        add('<text x="%.1f" y="%d" font-size="13" font-weight="bold" '
            'text-anchor="middle">%s</text>'
            % (ax + (pw - LEFT_AXIS - PANEL_PAD) / 2.0, base_y + 20,
               escape(wl)))
        x0 += pw
    add('</svg>')
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    src = argv[0] if argv else os.path.join(here, "results", "latest.json")
    dst = argv[1] if len(argv) > 1 else os.path.join(here, "results",
                                                      "chart.svg")
    with open(src) as f:
        doc = json.load(f)
    write_chart(doc, dst)
    print("wrote", dst)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
