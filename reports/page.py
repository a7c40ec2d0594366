"""HTML building blocks of the report: tables from data with units, collapsible blocks, figures, the page.

A table is data first: ``{"columns": [{"key", "title", "unit"}], "rows": [{key: value}]}``
(:func:`table_data`), stored as such in ``results.json`` and rendered here with each
value formatted by its column's unit (:mod:`marginlab.reports.formatting`). Every piece
of text reaching the page goes through :func:`~marginlab.reports.formatting.esc`.
The page has no script and no remote resource: figures are embedded PNG data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from .formatting import MISSING, by_unit, esc, is_missing

__all__ = ["Column", "table_data", "frame_table", "render_table", "details", "figure_html", "page_html", "CSS"]

#: A column: (key, title, unit); unit ``None`` for text.
Column = tuple[str, str, str | None]

_MONEY_UNITS = {"quote ccy", "usd", "money"}


def _plain(x: Any) -> Any:
    """A JSON-ready scalar (numpy scalars unwrapped, NaN as None, timestamps as ISO dates)."""
    if hasattr(x, "item") and not isinstance(x, str | bytes):
        try:
            x = x.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(x, pd.Timestamp):
        return x.strftime("%Y-%m-%d") if x == x.normalize() else x.isoformat()
    if isinstance(x, float) and (x != x or x in (float("inf"), float("-inf"))):
        return None if x != x else ("inf" if x > 0 else "-inf")
    return x


def table_data(columns: Sequence[Column], rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A table as data: columns with titles and units, rows as dicts (JSON-ready)."""
    cols = [{"key": k, "title": t, "unit": u} for k, t, u in columns]
    return {"columns": cols, "rows": [{k: _plain(r.get(k)) for k, _, _ in columns} for r in rows]}


def frame_table(frame: pd.DataFrame, units: dict[str, str | None] | None = None,
                titles: dict[str, str] | None = None) -> dict[str, Any]:
    """A frame (index reset into columns) as :func:`table_data`; units per column, guessed when not given."""
    flat = frame.reset_index() if not isinstance(frame.index, pd.RangeIndex) else frame
    units = units or {}
    titles = titles or {}
    cols = [(str(c), titles.get(str(c), str(c).replace("_", " ")), units.get(str(c), guess_unit(flat[c])))
            for c in flat.columns]
    return table_data(cols, flat.rename(columns=str).to_dict(orient="records"))


def guess_unit(series: pd.Series) -> str | None:
    """Unit of a column by its name and type: p-values, rates, money, counts; text otherwise."""
    name = str(series.name).lower()
    if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return None
    if "pvalue" in name or name.endswith("_p") or "p_value" in name:
        return "pvalue"
    if any(w in name for w in ("rate", "share", "fraction", "pct", "increase", "coverage", "benefit")):
        return "fraction"
    if any(w in name for w in ("margin", "loss", "shortfall", "cost", "collateral", "call", "notional", "amount")):
        return "quote ccy"
    if pd.api.types.is_integer_dtype(series) or name in ("breaches", "observations", "dates", "count"):
        return "count"
    return "ratio"


def _cell(value: Any, unit: str | None) -> str:
    if is_missing(value):
        return f'<td class="na">{MISSING}</td>'
    cls = "money" if (unit or "").lower() in _MONEY_UNITS else ("num" if unit else "txt")
    if isinstance(value, str) and unit:  # e.g. "inf" stored for an infinite ratio
        text = "\u221e" if value == "inf" else value
    else:
        text = by_unit(value, unit)
    return f'<td class="{cls}">{esc(text)}</td>'


def render_table(data: dict[str, Any], table_id: str | None = None, caption: str | None = None,
                 cls: str = "t") -> str:
    """HTML of a :func:`table_data` table (headers carry the unit)."""
    head = "".join(f'<th scope="col">{esc(c["title"])}' + (f'<span class="unit">{esc(_unit_label(c["unit"]))}'
                                                           "</span>" if _unit_label(c["unit"]) else "") + "</th>"
                   for c in data["columns"])
    body = "".join("<tr>" + "".join(_cell(r.get(c["key"]), c["unit"]) for c in data["columns"]) + "</tr>"
                   for r in data["rows"])
    ident = f' id="{esc(table_id)}"' if table_id else ""
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return f'<div class="scroll"><table class="{cls}"{ident}>{cap}<thead><tr>{head}</tr></thead>' \
           f"<tbody>{body}</tbody></table></div>"


def _unit_label(unit: str | None) -> str:
    return {"quote ccy": "USD", "fraction": "%", "fraction points": "pp", "pvalue": "p", "count": "", "ratio": "",
            None: "",
            "days": "days", "seconds": "s"}.get(unit, unit or "")


def details(summary: str, body: str, open_: bool = False, cls: str = "") -> str:
    """A collapsible block (``<details>``); ``summary`` is text (escaped), ``body`` HTML."""
    return (f'<details class="{cls}"' + (" open" if open_ else "") + f"><summary>{esc(summary)}</summary>"
            f"{body}</details>")


def figure_html(png_b64: str, alt: str, caption: str, fig_id: str) -> str:
    """An embedded PNG figure with its caption."""
    return (f'<figure id="{esc(fig_id)}"><img alt="{esc(alt)}" src="data:image/png;base64,{png_b64}"/>'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


CSS = """
:root { --green:#d9f2e0; --red:#f8d0cc; --blue:#d6e4f5; --grey:#eeeeee; --ink:#1d2228; --muted:#5b6470; }
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--ink); margin: 0;
       line-height: 1.45; font-size: 15px; background: #fff; }
main { max-width: 1280px; margin: 0 auto; padding: 18px 20px 60px; }
header.top { border-bottom: 2px solid #2b5d8a; margin-bottom: 10px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 34px 0 8px; border-bottom: 1px solid #d0d5db; padding-bottom: 3px; }
h3 { font-size: 16px; margin: 22px 0 6px; }
h4 { font-size: 14px; margin: 14px 0 4px; }
p.meta { color: var(--muted); margin: 2px 0 8px; font-size: 13px; }
nav.toc { font-size: 13px; margin: 6px 0 4px; }
nav.toc ol { display: flex; flex-wrap: wrap; gap: 4px 18px; padding-left: 18px; margin: 4px 0; }
nav.toc li { list-style-position: inside; }  /* markers inside: "10." no longer runs into item 9 */
ul.lede { font-size: 15.5px; margin: 6px 0 10px; padding-left: 20px; }
ul.lede li { margin-bottom: 4px; }
.scroll { overflow-x: auto; max-width: 100%; }
table.t { border-collapse: collapse; font-size: 13px; margin: 6px 0 14px; }
table.t th, table.t td { border: 1px solid #d4d8dd; padding: 3px 7px; vertical-align: top; }
table.t th { background: #f1f3f5; text-align: left; font-weight: 600; }
table.t td.num, table.t td.money { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.t td.na { text-align: center; color: var(--muted); }
span.unit { display: block; font-weight: normal; color: var(--muted); font-size: 11px; }
table.verdict { border-collapse: collapse; font-size: 13px; margin: 8px 0 6px; }
table.verdict th, table.verdict td { border: 1px solid #c4c9cf; padding: 4px 7px; }
table.verdict thead th { background: #f1f3f5; font-weight: 600; vertical-align: bottom; max-width: 150px; }
table.verdict tbody th { text-align: left; font-weight: 600; background: #fafbfc; max-width: 300px; }
table.verdict td { text-align: center; min-width: 104px; line-height: 1.25; }
td.v-pass { background: var(--green); }
td.v-too-many-breaches { background: var(--red); }
td.v-over-margined { background: var(--blue); }
td.v-n-a, td.v-warm-up { background: var(--grey); color: var(--muted); }
td .vl { font-weight: 700; font-size: 12px; display: block; }
td .vn { display: block; font-variant-numeric: tabular-nums; }
span.zone { display: inline-block; min-width: 14px; padding: 0 3px; border-radius: 3px; font-size: 11px;
            font-weight: 700; color: #fff; }
span.zone-green { background: #2e8b57; } span.zone-yellow { background: #c99700; }
span.zone-red { background: #c0392b; }
.legend { font-size: 12.5px; color: var(--muted); margin: 4px 0 10px; }
.legend .sw { display: inline-block; width: 12px; height: 12px; border: 1px solid #aaa; vertical-align: -2px;
              margin: 0 3px 0 10px; }
.note { font-size: 13px; color: var(--muted); }
figure { margin: 8px 0 18px; }
figure img { max-width: 100%; height: auto; display: block; border: 1px solid #eceef0; }
figcaption { font-size: 12.5px; color: var(--muted); margin-top: 3px; }
details { margin: 4px 0 8px; }
details > summary { cursor: pointer; font-weight: 600; font-size: 13.5px; color: #2b5d8a; }
details.pair { margin-left: 12px; }
pre.study { background: #f6f8fa; border: 1px solid #e1e4e8; padding: 8px; font-size: 12px; overflow-x: auto; }
code, pre { font-family: SFMono-Regular, Menlo, Consolas, monospace; }
div.formula img.formula { display: block; margin: 6px 0 2px; }
code.formula { display: block; background: #f6f8fa; padding: 5px 8px; margin: 4px 0; font-size: 12.5px;
               white-space: pre-wrap; }
.model { border-left: 3px solid #2b5d8a; padding-left: 12px; margin: 14px 0 20px; }
"""


def page_html(title: str, header: str, toc: Sequence[tuple[str, str]], body: str) -> str:
    """The whole page: title, header block (HTML), table of contents (anchor, title) and body (HTML)."""
    items = "".join(f'<li><a href="#{esc(a)}">{esc(t)}</a></li>' for a, t in toc)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body><main>\n"
            f'<header class="top">{header}<nav class="toc" aria-label="Contents"><ol>{items}</ol></nav></header>\n'
            f"{body}\n</main></body></html>\n")
