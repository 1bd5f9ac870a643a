"""The HTML page: escaped tables, embedded PNG figures and inline CSS. Nothing on the
page refers to another file or site, so it opens offline as a single file."""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from html import escape
from typing import Any

from .plotting import Plot

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 0;
  color: #1d1d1f; background: #fafafa; }
header { background: #1f3a5f; color: white; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 22px; }
header p { margin: 0; opacity: 0.85; font-size: 14px; }
nav { padding: 8px 32px; background: #e8eef6; font-size: 13px; }
nav a { margin-right: 14px; color: #1f3a5f; text-decoration: none; }
main { padding: 8px 32px 40px 32px; max-width: 1600px; }
section { background: white; border: 1px solid #dde3ea; border-radius: 6px;
  padding: 12px 20px 16px 20px; margin: 16px 0; }
h2 { font-size: 18px; margin: 6px 0 10px 0; color: #1f3a5f; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 10px 0; }
th, td { border-bottom: 1px solid #e3e3e3; padding: 4px 10px; text-align: left; }
th { background: #f1f4f8; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 10px 0 18px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; display: block; }
figcaption { font-size: 12px; color: #555; margin-top: 4px; max-width: 1100px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 6px 0 12px 0; }
.card { border: 1px solid #dde3ea; border-radius: 6px; padding: 8px 14px; min-width: 150px; }
.card .v { font-size: 20px; font-weight: 600; }
.card .k { font-size: 12px; color: #555; }
.note { color: #555; font-size: 13px; }
.warn { background: #fff4e5; border: 1px solid #f0c27b; padding: 8px 12px; border-radius: 4px; }
.grid2 { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
"""


@dataclass
class Section:
    anchor: str
    title: str
    body: str


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.{digits}f}"
    if isinstance(value, list | tuple):
        return ", ".join(fmt(v, digits) for v in value)
    return str(value)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for value in row:
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            cls = ' class="num"' if numeric else ""
            cells.append(f"<td{cls}>{escape(fmt(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def key_value_table(pairs: list[tuple[str, Any]]) -> str:
    # Values as text, left-aligned next to their keys: a right-aligned number would sit
    # far from its key when another row's value is long.
    return table(["", "value"], [[k, fmt(v)] for k, v in pairs])


def figure(plot: Plot) -> str:
    data = base64.b64encode(plot.png).decode("ascii")
    return (
        f'<figure id="fig-{escape(plot.name)}"><img src="data:image/png;base64,{data}" '
        f'alt="{escape(plot.title)}"><figcaption><b>{escape(plot.title)}.</b> '
        f"{escape(plot.caption)}</figcaption></figure>"
    )


def cards(items: list[tuple[str, str]]) -> str:
    inner = "".join(
        f'<div class="card"><div class="v">{escape(v)}</div><div class="k">{escape(k)}</div></div>'
        for k, v in items
    )
    return f'<div class="cards">{inner}</div>'


def note(text: str, warn: bool = False) -> str:
    return f'<p class="{"warn" if warn else "note"}">{escape(text)}</p>'


def document(title: str, subtitle: str, sections: list[Section]) -> str:
    nav = "".join(f'<a href="#{escape(s.anchor)}">{escape(s.title)}</a>' for s in sections)
    body = "".join(
        f'<section id="{escape(s.anchor)}"><h2>{escape(s.title)}</h2>{s.body}</section>'
        for s in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><p>{escape(subtitle)}</p></header>"
        f"<nav>{nav}</nav><main>{body}</main></body></html>\n"
    )
