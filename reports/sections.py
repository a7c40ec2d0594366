"""The report's sections: a registry of (build, render) pairs driven by what the result carries.

A :class:`Section` has a ``build(data) -> dict | None`` that extracts, from a
:class:`ReportData` (the study result plus memoised views of it), the JSON-ready
content of the section (tables as :func:`~marginlab.reports.page.table_data`, with
units), or ``None`` when the result carries nothing for it (e.g. no stress results);
and a ``render(content, page) -> str`` that turns that content (and figures drawn from
the result) into HTML. ``results.json`` holds every built section's content, so the
JSON carries what the HTML shows.

:data:`SECTIONS` is the registry, in page order; :func:`register_section` adds one
(``after=`` a key places it), so that a new kind of result (offsets, procyclicality,
stress, sweeps, member accounts) is one section that renders when its data exists.
"""

from __future__ import annotations

import dataclasses
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from marginlab.datasets.conventions import date_format
from marginlab.models.methodology import methodology_of
from marginlab.validation.executors import counting
from marginlab.validation.metrics import monte_carlo_rel_se

from . import figures as fg
from .formatting import and_list, esc, expected_count, percent, pvalue
from .page import details, figure_html, frame_table, render_table, table_data
from .verdict import CELL_LEGEND, LEVEL, ZONE_LEGEND, cell_label, verdict_books, verdict_matrix

__all__ = ["Section", "SECTIONS", "register_section", "ReportData", "Page", "build_sections", "DEFAULT_FUNDING_RATE",
           "LEVEL"]

#: Funding rate (per year) at which collateral is costed when the study does not give one.
DEFAULT_FUNDING_RATE = 0.05


@dataclass(frozen=True)
class Section:
    """One section of the report: ``build(data) -> content | None`` and ``render(content, page) -> html``."""

    key: str
    title: str
    build: Callable[[ReportData], dict[str, Any] | None]
    render: Callable[[dict[str, Any], Page], str]


#: The registry, in page order.
SECTIONS: list[Section] = []


def register_section(section: Section, after: str | None = None) -> Section:
    """Add ``section`` to :data:`SECTIONS` (at the end, or right after the section ``after``)."""
    if any(s.key == section.key for s in SECTIONS):
        raise ValueError(f"a report section {section.key!r} is already registered")
    if after is None:
        SECTIONS.append(section)
    else:
        keys = [s.key for s in SECTIONS]
        if after not in keys:
            raise ValueError(f"no report section {after!r} to place {section.key!r} after; sections: {keys}")
        SECTIONS.insert(keys.index(after) + 1, section)
    return section


def _section(key: str, title: str):
    def wrap(render):
        def deco(build):
            return register_section(Section(key, title, build, render))
        return deco
    return wrap


# --------------------------------------------------------------------------- data


class ReportData:
    """A study result and the views of it that sections share (each computed once)."""

    def __init__(self, study) -> None:
        self.study = study
        self.config = study.config
        self.backtest = study.backtest

    @cached_property
    def frame(self) -> pd.DataFrame:
        """Result rows with ``hit`` and ``common`` columns.

        ``hit``: exception of the tested VaR as the coverage tests count it (:meth:`BacktestResult.exceptions`:
        ``loss > var`` at the model's level; the margin for rule-based models); ``common``:
        the date is in the book's common sample.
        """
        f = self.backtest.frame.copy()
        f["hit"] = self.backtest.exceptions(f).to_numpy()
        f["common"] = False
        for pf, dates in self.samples.items():
            m = f["portfolio"] == pf
            f.loc[m, "common"] = f.loc[m, "date"].isin(dates)
        return f

    @cached_property
    def samples(self) -> dict[str, pd.DatetimeIndex]:
        """Each book's common sample."""
        return {pf: self.backtest.common_dates(pf) for pf in self.backtest.frame["portfolio"].unique()}

    @cached_property
    def models(self) -> list[str]:
        """Model labels in study order."""
        return list(self.backtest.models) or list(self.backtest.frame["model"].unique())

    @cached_property
    def accounts(self) -> list[str]:
        """Portfolios that are member accounts (``[accounts]`` of the study: :class:`AccountBook`), in run order."""
        return list(self.backtest.accounts)

    @cached_property
    def books(self) -> list[str]:
        """Books of the verdict matrix and drill-down: every portfolio but member accounts (:func:`verdict_books`)."""
        return verdict_books(self.backtest)

    def level(self, model: str) -> float:
        """Tail probability ``model`` is tested at."""
        return self.backtest.tail_prob(model, self.config.tail_prob)

    @cached_property
    def matrix(self) -> dict[str, Any]:
        """The verdict matrix (:func:`~marginlab.reports.verdict.verdict_matrix`)."""
        return verdict_matrix(self.backtest, self.study.coverage, self.books)

    @cached_property
    def reports(self) -> dict[tuple[str, str], Any]:
        """Every coverage test per (book, model) on the common sample, each model at its own level."""
        return self.study.coverage_reports()

    @cached_property
    def funding_rate(self) -> float:
        """Annual rate at which collateral is costed."""
        rate = getattr(self.config, "funding_rate", None)
        return DEFAULT_FUNDING_RATE if rate is None else float(rate)


class Page:
    """What a section's ``render`` draws with: the report data and its figures.

    Figures are numbered in page order. :meth:`draw` defers a figure: the section's HTML gets a placeholder and
    :meth:`finish` draws every deferred figure, on ``executor`` when one is given (``map(function, items)``,
    :mod:`marginlab.validation.executors`: the per-book figures are most of the report's time), else here.
    A drawing is a pure function of its arguments, so the page is the same bytes whoever draws it.
    """

    def __init__(self, data: ReportData, executor: Any = None) -> None:
        self.data = data
        self.executor = executor
        self._figures: list[list] = []  # [base64 PNG (None: draws nothing or not drawn yet), alt, caption]
        self._drawings: dict[int, tuple[Callable, tuple]] = {}  # figure index -> (function, args) to draw
        self._token = f"<!--marginlab-figure-{uuid.uuid4().hex}-"

    def _placeholder(self, png: str | None, alt: str, caption: str) -> str:
        self._figures.append([png, alt, caption])
        return f"{self._token}{len(self._figures) - 1}-->"

    def figure(self, fig, alt: str, caption: str) -> str:
        """Embed a matplotlib figure drawn already (None draws nothing)."""
        if fig is None:
            return ""
        return self._placeholder(fg.png(fig), alt, caption)

    def draw(self, function: Callable, *args: Any, alt: str, caption: str) -> str:
        """Embed the figure ``function(*args)`` (a function of :mod:`.figures`; None draws nothing), drawn later."""
        self._drawings[len(self._figures)] = (function, args)
        return self._placeholder(None, alt, caption)

    def finish(self, html: str) -> str:
        """``html`` with every placeholder replaced by its figure, numbered in page order (Figure 1, 2, ...)."""
        items = list(self._drawings.values())
        if self.executor is not None and len(items) > 1:
            with counting(self.executor, "figures") as executor:
                drawn = executor.map(_draw, items)
        else:
            drawn = [_draw(item) for item in items]
        for k, png in zip(self._drawings, drawn, strict=True):
            self._figures[k][0] = png
        html_of, n = [], 0
        for png, alt, caption in self._figures:
            if png is None:
                html_of.append("")
                continue
            n += 1
            html_of.append(figure_html(png, alt, f"Figure {n}. {caption}", f"fig-{n}"))
        self._figures, self._drawings = [], {}
        pattern = re.compile(re.escape(self._token) + r"(\d+)-->")
        return pattern.sub(lambda m: html_of[int(m.group(1))], html)


def _draw(item: tuple) -> str | None:
    """One deferred figure: ``function(*args)`` as base64 PNG (None when the function draws nothing)."""
    function, args = item
    fig = function(*args)
    return None if fig is None else fg.png(fig)


def build_sections(data: ReportData) -> list[tuple[Section, dict[str, Any]]]:
    """Every registered section whose data exists, with its content, in page order."""
    out = []
    for s in SECTIONS:
        content = s.build(data)
        if content is not None:
            out.append((s, content))
    return out


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")


def _para(text: str) -> str:
    return f"<p>{esc(text)}</p>"


# --------------------------------------------------------------------------- 1. the verdict


def _zone(zone: str) -> str:
    what = "traffic-light zone of the most recent 250 observations (all when fewer)"
    return f'<span class="zone zone-{esc(zone)}" title="{what}: {esc(zone)}">{esc(zone[0].upper())}</span>'


def render_verdict(content: dict[str, Any], page: Page) -> str:
    """The first screen: three sentences, the matrix, its legend and the common-sample note."""
    m = content["matrix"]
    lede = '<ul class="lede">' + "".join(f"<li>{esc(s)}</li>" for s in m["sentences"] if s) + "</ul>"
    if not m["books"]:  # member accounts only: their view is the account-level section
        return lede
    cells = {(c["portfolio"], c["model"]): c for c in m["cells"]}
    head = "".join(f'<th scope="col">{esc(md)}<span class="unit">p = {esc(f"{page.data.level(md):g}")}</span></th>'
                   for md in m["models"])
    rows = []
    for pf in m["books"]:
        tds = []
        for md in m["models"]:
            c = cells.get((pf, md), {"verdict": "n/a"})
            v = c["verdict"]
            if v in ("n/a", "warm-up"):
                tds.append(f'<td class="v-{_slug(v)}" title="{esc(pf)} / {esc(md)}: {esc(v)}">'
                           f'<span class="vl">{esc(v)}</span></td>')
                continue
            pct = c.get("mean_margin_pct_notional")
            counted = ("exceptions of its VaR at its level p" if c.get("tested") == "var" else "breaches of the margin")
            tip = (f"{pf} / {md}: {cell_label(c)}; {c['breaches']} {counted} in {c['observations']} observations, "
                   f"{expected_count(c['expected_breaches'])} expected at p = {c['p']:g}; "
                   f"one-sided p {pvalue(c['too_many_pvalue'])}, Kupiec p {pvalue(c['kupiec_pvalue'])}"
                   + (f"; the margin held (its ES) was breached {c['margin_breaches']} times"
                      if c.get("tested") == "var" else "")
                   + f"; Christoffersen independence p {pvalue(c.get('christoffersen_ind_pvalue'))}, conditional "
                   f"coverage p {pvalue(c.get('christoffersen_cc_pvalue'))}; "
                   f"zone of the most recent 250 observations (all when fewer) {c['traffic_light_zone']}; worst "
                   "250-observation window "
                   f"{c.get('worst_window_breaches', '–')} (p {pvalue(c.get('worst_window_pvalue'))}, "
                   "calibrated for the largest of all windows)")
            if "subsamples" in c:  # MPOR h > 1: the reach of the sub-sample test (verdict.mpor_reach)
                need = c["min_rejectable_breaches"]
                tip += (f"; {c['subsamples']} sub-samples of {c['subsample_observations']}+ observations: "
                        + (f"a rejection needs {need} breaches in one" if need is not None else "no count rejects")
                        + f", power {percent(c['power_2p'])} against twice the level")
            counts = (("VaR " if c.get("tested") == "var" else "")
                      + f"{c['breaches']:,} / {expected_count(c['expected_breaches'])}")
            label = cell_label(c)
            tds.append(f'<td class="v-{_slug(v)}" title="{esc(tip)}"><span class="vl">{esc(label)}</span>'
                       f'<span class="vn">{counts} {_zone(c["traffic_light_zone"])}</span>'
                       f'<span class="vn">{esc(percent(pct, 1))} of notional</span></td>')
        rows.append(f'<tr><th scope="row">{esc(pf)}</th>{"".join(tds)}</tr>')
    table = (f'<div class="scroll"><table class="verdict" id="verdict-matrix"><caption class="note">Books x models: '
             f"coverage verdict at each model's own level</caption><thead><tr><th>book</th>{head}</tr></thead>"
             f'<tbody>{"".join(rows)}</tbody></table></div>')
    legend = (f'<p class="legend">Cell: {esc(CELL_LEGEND)} Zones: G green, Y yellow, R red (see below); hover a '
              "cell for its p-values and its worst 250-observation window."
              '<span class="sw" style="background:var(--green)"></span>pass'
              '<span class="sw" style="background:var(--red)"></span>too many breaches'
              '<span class="sw" style="background:var(--blue)"></span>over-margined'
              '<span class="sw" style="background:var(--grey)"></span>n/a (model does not cover the book) or '
              f"warm-up</p><p class=\"note\">{esc(ZONE_LEGEND)}</p><p class=\"note\">{esc(m['rule'])}</p>")
    return f'{lede}{table}{legend}<p class="note">{esc(content["sample_note"])}</p>'


@_section("verdict", "Verdict")(render_verdict)
def build_verdict(data: ReportData) -> dict[str, Any]:
    """The verdict matrix, its three sentences and the common-sample note."""
    m = data.matrix
    spans = [s for s in m["common_sample"] if s["dates"]]
    if spans:
        n = [s["dates"] for s in spans]
        first = min(s["first"] for s in spans)
        last = max(s["last"] for s in spans)
        note = (f"Common sample: each book's models are compared on the dates where all of them have a margin "
                f"(models not covering the book excluded; warm-up dates dropped): {min(n):,} to {max(n):,} dates per "
                f"book, between {first} and {last}. Breach = realised loss over the MPOR of "
                f"{data.config.mpor_days} observation(s) > margin (strict); margins use market data known at each "
                "date's close only (venue parameter tables are fixed vintages applied to every date, some published "
                "after it: see Limitations (a) and (c)).")
    else:
        note = "No book has a common sample." if m["books"] else ""
    return {"matrix": m, "sample_note": note, "common_sample": table_data(
        [("portfolio", "book", None), ("dates", "dates", "count"), ("first", "first", None), ("last", "last", None)],
        m["common_sample"])}


# --------------------------------------------------------------------------- 2. compare schemes


def _pair_stats(data: ReportData) -> pd.DataFrame:
    """Per (reference book, model) on the book's common sample; member accounts have their own section."""
    f = data.frame[data.frame["common"] & data.frame["portfolio"].isin(data.books)]
    rows = []
    for (pf, md), r in f.groupby(["portfolio", "model"], sort=False):
        notional = r["notional"].to_numpy(float)
        ok = notional > 0
        pct = float(np.mean(r["margin"].to_numpy(float)[ok] / notional[ok])) if ok.any() else float("nan")
        rows.append({"portfolio": pf, "model": md, "observations": len(r), "breaches": int(r["breach"].sum()),
                     "breach_rate": float(r["breach"].mean()), "mean_margin": float(r["margin"].mean()),
                     "margin_pct": pct, "mean_notional": float(r["notional"].mean()),
                     "annual_cost": float(r["margin"].mean()) * data.funding_rate,
                     "cost_per_million": pct * data.funding_rate * 1e6 if math.isfinite(pct) else float("nan"),
                     "mc_rel_se": monte_carlo_rel_se(r)})
    return pd.DataFrame(rows)


#: the column of the Monte Carlo error in the compare tables
MC_ERROR_TITLE = ("Monte Carlo error: median standard error of one date's margin / the margin (simulated scenarios "
                  "only; another seed moves a date's margin by about this)")


def _mc_error_text(pooled: list[dict[str, Any]], mpor: int) -> str:
    """The sentence on the models whose margins carry a stated Monte Carlo error (empty when none does)."""
    noisy = {}
    for row in pooled:
        if math.isfinite(row["mc_rel_se"]):
            noisy.setdefault(row["model"], row["mc_rel_se"])
    if not noisy:
        return ""
    exact = "rules, historical scenarios" + (", FHS at a one-observation MPOR" if mpor == 1 else "")
    return (" Margins of " + and_list([f"{md} ({percent(v)})" for md, v in noisy.items()])
            + " are estimated from simulated scenarios: in brackets, the median Monte Carlo standard error of one "
              "date's margin relative to the margin (pooled rows below), so another seed moves a date's margin by "
              "about that much, and day-by-day differences between models of that size can be simulation noise. "
              "The averages and breach counts here move far less (the draws are independent across dates), and "
              "models sharing draws (a model and its overlays) move together. Rows without a figure have no "
              f"simulation noise ({exact}) or are not estimated (fewer than 10 tail scenarios; the stressed_weight "
              "overlay's mixture of simulated and historical scenarios).")


def render_compare(content: dict[str, Any], page: Page) -> str:
    """Efficiency frontier (per book and pooled), the cost of collateral and every metric."""
    d = page.data
    pooled = pd.DataFrame(content["pooled"]["rows"]).rename(columns={"breach_rate": "breach_rate"})
    pairs = pd.DataFrame(content["pairs"]["rows"])
    out = [_para(content["intro"])]
    if len(pooled):
        shared = pooled[pooled["population"] == content["pooled_shared"]]
        pts = (shared if len(shared) else pooled).assign(book="pooled: " + (content["pooled_shared"] if len(shared)
                                                                            else "the books each model covers"))
        out.append(page.draw(fg.frontier, pts, "pooled", d.config.tail_prob, d.models,
                             alt="Efficiency frontier, pooled over books",
                             caption="Efficiency frontier, pooled: breach rate of the margin against average margin "
                                     "as % of notional (mean of daily margin / notional), both pooled over the "
                                     "observations, one point per model over "
                                     + (content["pooled_shared"] if len(shared) else
                                        "the books it covers (no book is covered by every model)")
                                     + " (dashed: the study's target p). Lower left is better: fewer breaches for "
                                       "less collateral."))
    out.append(render_table(content["pooled"], caption=content["pooled_caption"]))
    if len(pairs):
        pts = pairs[pairs["portfolio"].isin(d.books)].rename(columns={"portfolio": "book"})
        if len(pts):
            out.append(page.draw(fg.frontier, pts, "per book", d.config.tail_prob, d.models,
                                 alt="Efficiency frontier per book",
                                 caption="Efficiency frontier per book: breach rate against average margin as % of "
                                   "notional."))
    out.append(details("Cost of collateral and efficiency per book and model",
                       render_table(content["pairs"])))
    out.append(details("Every capital-efficiency and procyclicality metric per book and model (common samples)",
                       _para("Procyclicality measures here are on the book as held: rolls and re-sizing change "
                             "the margin too, so read the largest increases of option books with the roll dates in "
                             "mind.") + render_table(content["metrics"])))
    return "".join(out)


def _weighted(values: pd.Series, weights: pd.Series) -> float:
    """Mean of the finite ``values`` weighted by ``weights`` (NaN when none is finite).

    Equal weights: the plain mean, computed as such (the same bits as an unweighted mean, not a rounding apart).
    """
    v, w = values.to_numpy(float), weights.to_numpy(float)
    ok = np.isfinite(v) & (w > 0)
    if not ok.any():
        return float("nan")
    if np.all(w[ok] == w[ok][0]):
        return float(values[ok].mean())
    return float(np.sum(v[ok] * w[ok]) / np.sum(w[ok]))


@_section("compare", "Compare schemes")(render_compare)
def build_compare(data: ReportData) -> dict[str, Any] | None:
    """Efficiency (breach rate vs average margin % of notional), cost of collateral, every metric."""
    pairs = _pair_stats(data)
    if pairs.empty:
        return None
    covers = {md: set(r["portfolio"]) for md, r in pairs.groupby("model", sort=False)}
    models = [md for md in data.models if md in covers]
    shared = set.intersection(*covers.values())
    same = all(v == shared for v in covers.values())
    shared_label = (f"the {len(shared)} reference book{'s' if len(shared) != 1 else ''}"
                    + (" every model covers" if not same else ""))

    def pool(md: str, books: set[str], population: str) -> dict[str, Any]:
        r = pairs[(pairs["model"] == md) & pairs["portfolio"].isin(books)]
        return {"model": md, "population": population, "books": len(r),
                "observations": int(r["observations"].sum()), "breaches": int(r["breaches"].sum()),
                "breach_rate": float(r["breaches"].sum() / r["observations"].sum()),
                # weighted by observations, as the breach rate is pooled: the mean of daily margin / notional over
                # the pooled dates (an unweighted mean over books gave a short book the weight of a long one)
                "margin_pct": _weighted(r["margin_pct"], r["observations"]),
                "cost_per_million": _weighted(r["cost_per_million"], r["observations"]),
                "mc_rel_se": monte_carlo_rel_se(common[(common["model"] == md) & common["portfolio"].isin(books)])}

    common = data.frame[data.frame["common"] & data.frame["portfolio"].isin(data.books)]
    pooled = [pool(md, shared, shared_label) for md in models] if shared else []
    own = [md for md in models if covers[md] != shared]
    pooled += [pool(md, covers[md], f"the {len(covers[md])} book{'s' if len(covers[md]) != 1 else ''} it covers")
               for md in own]
    caption = f"Pooled over {shared_label} (common samples" + ("; member accounts are in their own section)"
                                                              if data.backtest.accounts else ")")
    if not same:
        caption = ((caption if shared else "No reference book is covered by every model") + "; models cover "
                   "different books, so each model covering others also has a row over all the books it covers: "
                   + ", ".join(f"{md} {len(covers[md])} of {len(data.books)}" for md in own))
    from marginlab.validation.metrics import METRICS

    units = {m.key: m.unit for m in METRICS}
    titles = {m.key: m.title for m in METRICS}
    metrics = data.study.metrics.drop(columns=["sample"], errors="ignore")
    rate = data.funding_rate
    return {
        "funding_rate": rate,
        "intro": ("Each model's breach rate (realised loss > margin) against its average margin as % of the book's "
                  "gross notional, on each reference book's common sample"
                  + (" (member accounts: their own section)" if data.backtest.accounts else "") + ". "
                  "Gross notional: the sum over the positions held of |quantity| x the underlying's price (an "
                  "option counted at its underlying's price, hedges included), so an option book of $1m per leg has "
                  "a gross notional above $1m. Collateral is costed at a funding rate of "
                  f"{percent(rate)} a year: the annual cost of holding the average margin, and per $1,000,000 of "
                  "gross notional (comparable across books; a pooled row's figures are weighted by observations)."
                  + _mc_error_text(pooled, data.config.mpor_days)),
        "pooled_shared": shared_label if shared else None, "pooled_caption": caption,
        "pooled": table_data([("model", "model", None), ("population", "pooled over", None),
                              ("books", "books", "count"),
                              ("observations", "observations", "count"), ("breaches", "breaches", "count"),
                              ("breach_rate", "breach rate", "fraction"),
                              ("margin_pct", "average margin, % of notional (mean of daily margin / notional "
                                             "over the pooled observations)", "fraction"),
                              ("cost_per_million", f"funding cost per $1m notional a year at {percent(rate)} "
                                                   "(weighted by observations)", "quote ccy"),
                              ("mc_rel_se", MC_ERROR_TITLE, "fraction")], pooled),
        "pairs": table_data([("portfolio", "book", None), ("model", "model", None),
                             ("observations", "observations", "count"), ("breaches", "breaches", "count"),
                             ("breach_rate", "breach rate", "fraction"), ("mean_margin", "average margin", "quote ccy"),
                             ("margin_pct", "average margin, % of notional (mean of daily margin / notional)",
                              "fraction"),
                             ("mean_notional", "average gross notional", "quote ccy"),
                             ("annual_cost", f"funding cost a year at {percent(rate)}", "quote ccy"),
                             ("cost_per_million", "funding cost per $1m notional a year", "quote ccy"),
                             ("mc_rel_se", MC_ERROR_TITLE, "fraction")],
                            pairs.to_dict(orient="records")),
        "metrics": frame_table(metrics, units={**units, "observations": "count"}, titles=titles),
    }


# --------------------------------------------------------------------------- 3. plug-in sections (other streams)


def render_offsets(content: dict[str, Any], page: Page) -> str:
    """Offset benefit: the book's margin / the sum of its legs' standalone margins."""
    out = [_para(content["intro"]), render_table(content["table"])]
    bars = content.get("bars")
    if bars and bars["table"]["rows"]:
        wide = pd.DataFrame(bars["table"]["rows"]).set_index("model")
        out.append(page.draw(fg.bars, wide, "offset_benefit", "average offset benefit (margin / sum of standalone "
                                                          "legs' margins)", True,
                             alt="Offset benefit per model", caption=bars["caption"]))
    return "".join(out)


def _offset_bars(data: ReportData, table: pd.DataFrame) -> dict[str, Any]:
    """Figure 'offset benefit per model': the mean over the books that can have an offset (two positions or more).

    A book of one position has a ratio of 1 by construction and is left out (a model covering more one-position
    books would otherwise look as if it netted less); models in study order; the values are in results.json.
    """
    portfolios = getattr(data.backtest, "portfolios", {}) or {}
    single = {pf for pf, book in portfolios.items() if getattr(book, "position_count", None) == 1}
    multi = table[~table["portfolio"].isin(single)]
    means = multi.groupby("model", sort=False)["offset_benefit"].agg(["mean", "size"])
    rows = [{"model": md, "offset_benefit": float(means.loc[md, "mean"]), "books": int(means.loc[md, "size"])}
            for md in [*data.models, *(m for m in means.index if m not in data.models)] if md in means.index]
    books = list(dict.fromkeys(multi["portfolio"]))
    caption = ("Offset benefit per model, mean over the books with two positions or more that the model covers ("
               + (and_list(books) if books else "none") + "; one-position books are 1 by construction and left out): "
               "100% = no offset recognised; lower = more netting across legs. Models differ in the books they "
               "cover: books per model " + ", ".join(f"{r['model']} {r['books']}" for r in rows) + ".")
    return {"caption": caption, "books": books, "rows": rows}


@_section("offsets", "Offset benefit")(render_offsets)
def build_offsets(data: ReportData) -> dict[str, Any] | None:
    """Present when the result carries ``offset_benefit`` (metric) or a ``standalone_margin`` column."""
    metrics = data.study.metrics
    f = data.frame[data.frame["common"]]
    table = metrics[["offset_benefit"]].dropna().reset_index() if "offset_benefit" in metrics.columns else None
    if (table is None or table.empty) and "standalone_margin" in f.columns:
        g = f[f["standalone_margin"] > 0].assign(ratio=lambda x: x["margin"] / x["standalone_margin"])
        table = g.groupby(["portfolio", "model"], sort=False)["ratio"].mean().rename("offset_benefit").reset_index()
    if table is None:
        return None
    if table.empty:
        return None
    bars = _offset_bars(data, table)
    return {"intro": "Offset benefit: the book's margin divided by the sum of the margins of its legs margined "
                     "standalone, averaged over the common sample. 100% means the model recognises no offset.",
            "table": table_data([("portfolio", "book", None), ("model", "model", None),
                                 ("offset_benefit", "average offset benefit", "fraction")],
                                table.to_dict(orient="records")),
            "bars": {"caption": bars["caption"], "books": bars["books"],
                     "table": table_data([("model", "model", None),
                                          ("offset_benefit", "mean offset benefit over the books", "fraction"),
                                          ("books", "books", "count")], bars["rows"])}}


def render_generic(content: dict[str, Any], page: Page) -> str:
    """A section made of an introduction and tables (and optional bar figures)."""
    out = [_para(content["intro"]), *(_para(note) for note in content.get("notes", []))]
    for item in content["tables"]:
        body = render_table(item["table"], caption=item.get("caption"))
        out.append(details(item["caption"], body) if item.get("collapsed") else body)
    for fig in content.get("bars", []):
        frame = pd.DataFrame(fig["rows"]).set_index("label")
        out.append(page.draw(fg.bars, frame, "value", fig["axis"], fig.get("percent", False), alt=fig["title"],
                             caption=fig["title"]))
    return "".join(out)


def _measure_bars(frame: pd.DataFrame, column: str, title: str, pct: bool) -> dict[str, Any] | None:
    if column not in frame.columns or "model" not in frame.columns:
        return None
    s = frame.groupby("model", sort=False)[column].median().dropna()
    if s.empty:
        return None
    return {"title": title, "axis": column.replace("_", " ") + " (median over books)", "percent": pct,
            "rows": [{"label": k, "value": float(v)} for k, v in s.items()]}


def _study_table(data: ReportData, attribute: str, method: str | None = None) -> pd.DataFrame | None:
    """A table the study result carries (``StudyResult.<attribute>``), else the backtest's ``<method>()``."""
    table = getattr(data.study, attribute, None)
    if table is None and method is not None and hasattr(data.backtest, method):
        table = getattr(data.backtest, method)()
    if table is None or len(table) == 0:
        return None
    return table.reset_index() if not isinstance(table.index, pd.RangeIndex) else table


@_section("procyclicality", "Procyclicality and APC tools")(render_generic)
def build_procyclicality(data: ReportData) -> dict[str, Any] | None:
    """Present when the result carries procyclicality measures.

    ``StudyResult.procyclicality`` (else ``BacktestResult.procyclicality()``): the ESMA 2018 measures per pair;
    ``StudyResult.apc`` (else ``BacktestResult.apc_tradeoff()``): each APC tool's cost against its benefit.
    """
    flat = _study_table(data, "procyclicality", "procyclicality")
    if flat is None:
        return None
    flat = flat.drop(columns=["sample"], errors="ignore")
    from marginlab.validation import metrics as registry

    measures = getattr(registry, "PROCYCLICALITY", ())
    units = {m.key: m.unit for m in measures}
    titles = {m.key: m.title for m in measures}
    tables = [{"caption": "Procyclicality measures per book and model (margin / notional; rolls and re-sizing "
                          "excluded)", "table": frame_table(flat, units=units, titles=titles)}]
    cb = _study_table(data, "apc", "apc_tradeoff")
    if cb is not None:
        cb_units = {c: ("quote ccy" if c == "extra_margin" else "count" if c == "dates" else
                        "ratio" if "peak_to_trough" in c else
                        "fraction points" if c.startswith("reduction_") and not c.endswith("_rel") else "fraction")
                    for c in cb.columns if pd.api.types.is_numeric_dtype(cb[c])}
        tables.insert(0, {"caption": "Cost of each APC tool (average extra margin) against its benefit: the largest "
                                     "1/5/30-day increases of margin / notional without and with it, their reduction "
                                     "in percentage points (pp) and relative to the increase without it (_rel), "
                                     "beside the model it wraps", "table": frame_table(cb, units=cb_units)})
    bars = [b for b in (_measure_bars(flat, c, "Largest 1-day relative increase of margin / notional (max m_t / "
                                               "m_t-1 - 1 on days the book is unchanged), median over the books of "
                                               "each model", True)
                        for c in flat.columns if "1d" in str(c) and "increase" in str(c)) if b][:1]
    content = {"intro": "How much the margin moves when volatility rises (EMIR RTS 153/2013 Art. 28; ESMA 2018 APC "
                        "guidelines): peak-to-trough, the largest n-day increases and the distribution of margin "
                        "calls, measured on the margin per unit of notional so that rolls and re-sizing do not count "
                        "as procyclicality.", "tables": tables, "bars": bars}
    notes = _rule_switch_notes(data)
    if notes:  # only when a venue model's largest increase is its rule changing (other reports: unchanged)
        content["notes"] = notes
    return content


def _rule_switch_notes(data: ReportData) -> list[str]:
    """One sentence per venue pair whose largest 1-day increase spans a switch of the venue's rule.

    The window (rows t-1, t) spans a switch at day D when row t-1 is observed before D 00:00 UTC and row t at or
    after it (rows are observed at label + one step, :func:`~marginlab.datasets.conventions.observation_times`).
    """
    from marginlab.datasets.conventions import date_format, frequency_delta, observation_times
    from marginlab.validation.metrics import largest_increase_window, max_n_day_increase, observations

    one_day = observations(1, pd.Timedelta(days=1) / frequency_delta(data.config.freq))  # rows of a 1-day window
    fmt = date_format(data.config.freq)

    rules = {label: sw for label, sw in _venue_rules(data).items() if sw}
    if not rules:
        return []
    f = data.frame[data.frame["common"] & data.frame["model"].isin(list(rules))]
    notes = []
    for (pf, md), rows in f.groupby(["portfolio", "model"], sort=False):
        rows = rows.set_index("date")
        window = largest_increase_window(rows, one_day)
        if window is None:
            continue
        seen = observation_times(pd.DatetimeIndex(list(window)), data.config.freq)
        for day, what in rules[md].items():
            switch = pd.Timestamp(day, tz="UTC")
            if seen[0] < switch <= seen[1]:
                notes.append(f"{md} on {pf}: the largest 1-day increase of margin / notional "
                             f"({percent(max_n_day_increase(rows, one_day))}, row dated {window[1]:{fmt}}, observed "
                             f"{seen[1]:%Y-%m-%d %H:%M} UTC) falls on the venue's rule switch of {day}: {what}. It is "
                             "the rule changing, not the model responding to the market (Limitations (c)).")
    return notes


_STRESS_UNITS = {"dates": "count", "covered_share": "fraction", "median_ratio": "ratio", "min_ratio": "ratio",
                 "mean_stress_loss": "quote ccy", "max_stress_loss": "quote ccy", "members_min": "count",
                 "members_median": "count", "members_max": "count",
                 "cover1_max": "quote ccy", "cover2_max": "quote ccy", "cover1_mean": "quote ccy",
                 "cover2_mean": "quote ccy", "count": "count", "median": "fraction", "min": "fraction"}


@_section("stress", "Stress coverage")(render_generic)
def build_stress(data: ReportData) -> dict[str, Any] | None:
    """Present when the study result carries stress results.

    ``StudyResult.stress``: :func:`marginlab.validation.stress.stress_coverage` per book, model and scenario (a
    raw ``stress_losses`` frame is summarised here); ``StudyResult.cover``: ``cover_n`` per date and model;
    ``StudyResult.reverse``: ``reverse_stress`` per book, model and date.
    """
    stress = getattr(data.study, "stress", None)
    note = data.study.stress_text() if hasattr(data.study, "stress_text") else ""
    if stress is None:
        return None
    if len(stress) == 0:  # every requested scenario n/a for the books (or no stress date): said, never silent
        return {"intro": note or "No stress loss: the study's books have no stress date.", "tables": [], "bars": [],
                "note": note}
    cover = getattr(data.study, "cover", None)
    if "stress_loss" in stress.columns:  # the tidy losses: summarise them as the stress stream does
        from marginlab.validation.stress import cover_n, stress_coverage

        # Cover-n needs the members' losses per joint market state (a frame with a "state" column)
        cover = cover_n(stress) if cover is None and "state" in stress.columns else cover
        stress = stress_coverage(stress)
    summary = stress.reset_index()
    worst = summary[summary["scenario"] == "worst"] if "scenario" in summary else summary
    tables = [{"caption": "Worst scenario of each date: share of dates the margin covers it, and margin / stress "
                          "loss", "table": frame_table(worst, units=_STRESS_UNITS)},
              {"caption": "Every scenario, per book and model", "collapsed": True,
               "table": frame_table(summary, units=_STRESS_UNITS)}]
    if cover is not None and len(cover):
        flat = cover.reset_index()
        largest = flat.groupby("model", sort=False).agg(
            dates=("members", "size"), members_min=("members", "min"), members_median=("members", "median"),
            members_max=("members", "max"), cover1_max=("cover1", "max"), cover1_mean=("cover1", "mean"),
            cover2_max=("cover2", "max"), cover2_mean=("cover2", "mean")).reset_index()
        if "cover2_state" in cover.columns:  # where the largest Cover-2 comes from (the first date of the peak)
            peak = flat.sort_values("cover2", ascending=False, kind="stable").drop_duplicates("model")
            peak = peak.set_index("model").reindex(largest["model"])
            when = date_format(data.config.freq)
            largest["cover2_max_date"] = [d.strftime(when) if isinstance(d, pd.Timestamp) else "" for d in peak["date"]]
            for c in ("members", "scenario", "state"):
                largest[f"cover2_max_{c}"] = peak[f"cover2_{c}"].to_numpy()
        tables.append({"caption": "Cover-1 and Cover-2: the largest uncovered stress losses of one and of two books "
                                  "taken as members (EMIR Art. 43(2); PFMI Principle 4) on the same stress dates, "
                                  "added within one joint market state (a shock, an episode's day or a combination of "
                                  "directions applied to every member at once), largest and average over dates, and "
                                  "the date, members, scenario and state of the largest Cover-2 (cover.csv: every "
                                  "date's); members: books stressed on a date (smallest, median, "
                                  "largest over dates; Cover-2 is Cover-1 on a date with one member)",
                       "table": frame_table(largest, units=_STRESS_UNITS)})
    reverse = getattr(data.study, "reverse", None)
    if reverse is not None and len(reverse) and "move" in reverse.columns:
        side = reverse["direction"].replace("", "none") if "direction" in reverse.columns else "?"
        rs = reverse.assign(direction=side).groupby(["portfolio", "model", "direction"], sort=False)["move"].agg(
            ["count", "median", "min"]).reset_index()
        tables.append({"caption": "Reverse stress: the smallest uniform adverse price move whose loss exhausts the "
                                  "margin, by the direction of that breaking move (down: prices fall, up: prices "
                                  "rise; none: no move within the grid): dates tested, median and smallest move",
                       "table": frame_table(rs, units=_STRESS_UNITS)})
    bars = [b for b in [_measure_bars(worst, "covered_share", "Share of dates the margin covers the worst "
                                                              "scenario", True)] if b]
    return {"intro": "Stress losses of historical episodes and hypothetical scenarios against the margin: the stress "
                     "coverage ratio (margin / worst stress loss) and the share of dates on which the margin covers "
                     "each scenario (EMIR RTS 153/2013 Art. 49; PFMI Principle 4)." + (f" {note}" if note else ""),
            "tables": tables, "bars": bars, "note": note}


#: Units of the account-level tables (the report's and the terminal's: ``StudyResult.accounts_text``).
ACCOUNT_UNITS = {"accounts": "count", "account_days": "count", "breaches": "count", "accounts_with_breach": "count",
                 "margin_breaches": "count", "accounts_below_target": "count", "accounts_rejected_5pct": "count",
                 "largest_shortfall": "quote ccy", "breach_rate": "fraction", "target_coverage": "fraction",
                 "coverage": "fraction", "share_with_breach": "fraction", "median_account_coverage": "fraction",
                 "min_account_coverage": "fraction", "too_many_pvalue": "pvalue", "p": "probability",
                 "held_days_untested": "count", "accounts_untestable": "count",
                 # the row counts' names on non-daily data (account_count_names)
                 "account_observations": "count", "held_observations_untested": "count"}


def account_count_names(freq: str) -> dict[str, str]:
    """Renames of the account tables' row counts on a panel other than daily: their rows are observations, not days.

    ``account_days`` -> ``account_observations``, ``held_days_untested`` -> ``held_observations_untested`` (e.g.
    hours); empty on daily data. One rule for the report and the terminal.
    """
    if date_format(freq) == date_format("1d"):
        return {}
    return {"account_days": "account_observations", "held_days_untested": "held_observations_untested"}


def no_account_replayed(bt) -> str:
    """The sentence saying that none of the file's member accounts was replayed, and why.

    Empty when one was, or the run had none. One text for the report and the terminal (``StudyResult.accounts_text``).
    """
    if bt.accounts or not (bt.idle_accounts or bt.untestable_accounts):
        return ""
    what = "holds a book" if not bt.untestable_accounts else "is tested"
    return (f"None of the {len(bt.idle_accounts) + len(bt.untestable_accounts):,} member accounts of the file {what} "
            "on a date of the study: no account was replayed (the account-level view needs the file's dates and the "
            "data of the books held).")


@_section("accounts", "Member accounts")(render_generic)
def build_accounts(data: ReportData) -> dict[str, Any] | None:
    """Present when the study has member accounts.

    A PQD 6.5-style table per model, the distribution of per-account breach rates, the worst accounts.
    """
    accounts = data.accounts
    bt, p = data.backtest, data.config.tail_prob
    untested = bt.untested_text()
    if not accounts and (bt.idle_accounts or bt.untestable_accounts):  # none of the file's accounts tested
        return {"intro": no_account_replayed(bt) + (f" {untested}" if untested else ""),
                "tables": [], "bars": [], "untested": untested}
    if not accounts:
        return None

    when = date_format(data.config.freq)  # hours on hourly data, as accounts.csv writes them

    daily = when == date_format("1d")
    held = "account-days" if daily else "account-observations"

    def dates_as_text(frame: pd.DataFrame) -> pd.DataFrame:
        cols = {c: frame[c].map(lambda d: None if pd.isna(d) else d.strftime(when))
                for c in frame.columns if c.endswith("_date")}
        # a count of rows: account-days on daily data, account-observations (e.g. hours) otherwise
        return frame.assign(**cols).rename(columns=account_count_names(data.config.freq))

    summary = dates_as_text(bt.accounts_summary(p))
    dist = bt.account_breach_distribution(p)
    worst = dates_as_text(bt.worst_accounts(10, by="largest_shortfall", default_p=p))
    bars = [{"title": "90th percentile of the per-account breach rate", "percent": True,
             "axis": "breach rate (90th percentile over accounts)",
             "rows": [{"label": md, "value": float(dist.loc[md, "q90"])} for md in dist.index]}]
    units = {**ACCOUNT_UNITS, "account_observations": "count"}
    return {"intro": f"Account-level backtests (CPMI-IOSCO PQD 6.5; EMIR RTS 153/2013 Art. 49) over {len(accounts):,} "
                     f"member accounts: pooled over {held}, by account, and the accounts with the largest "
                     "shortfall (loss - margin where the loss exceeds the margin). Breaches are counted as in the "
                     "verdict matrix: losses above the model's VaR at its own level p (the margin for VaR and "
                     "rule-based models; for an ES model its VaR at the ES level, e.g. p = 2.5%; its margin "
                     "breaches, loss > ES, are the margin breaches column). The p-value of too many breaches is per "
                     "account, the verdict matrix's test on the account's own observations: "
                     + ("the one-sided exact binomial" if bt.mpor_days == 1 else
                        f"the one-sided exact binomial on each of the {bt.mpor_days} non-overlapping sub-samples "
                        f"(one observation in {bt.mpor_days}: the MPOR windows overlap), Bonferroni-combined")
                     + "; with many accounts some fall below any threshold by chance."
                     + (f" {len(bt.idle_accounts):,} further account(s) of the file hold no book on any date of the "
                        "study and are not replayed." if bt.idle_accounts else "")
                     + (f" {untested}" if untested else ""),
            "tables": [{"caption": "Coverage of member accounts, per model", "table": frame_table(summary, units)},
                       {"caption": "Quantiles of the per-account breach rate, per model",
                        "table": frame_table(dist, {c: "fraction" for c in dist.columns})},
                       {"caption": "Worst accounts per model (largest shortfall)", "collapsed": True,
                        "table": frame_table(worst, units)}],
            "bars": bars, "untested": untested}


def render_sweep(content: dict[str, Any], page: Page) -> str:
    """The sweep's tidy table (collapsed) and a heatmap per model over the first two swept parameters."""
    out = [_para(content["intro"])]
    frame = pd.DataFrame(content["table"]["rows"])
    for hm in content["heatmaps"]:
        r = frame[frame["model"] == hm["model"]] if "model" in frame else frame
        grid = r.pivot_table(index=hm["rows"], columns=hm["columns"], values=hm["value"], aggfunc="mean")
        out.append(page.draw(fg.heatmap, grid, f"{hm['model']}: {hm['value'].replace('_', ' ')}", percent,
                             alt=f"Sweep heatmap {hm['model']}",
                             caption=f"{hm['model']}: {hm['value']} (mean over books) by {hm['rows']} and "
                                     f"{hm['columns']}."))
    out.append(details("Every grid point", render_table(content["table"])))
    return "".join(out)


@_section("sweep", "Parameter sensitivity")(render_sweep)
def build_sweep(data: ReportData) -> dict[str, Any] | None:
    """Present when the study result carries a sweep table (``study.sweep``: one row per grid point x book x model)."""
    sweep = getattr(data.study, "sweep", None)
    if sweep is None or len(sweep) == 0:
        return None
    frame = sweep.reset_index() if not isinstance(sweep.index, pd.RangeIndex) else sweep
    value = next((c for c in ("breach_rate", "kupiec_pvalue", "mean_margin") if c in frame.columns), None)
    meta = {"portfolio", "model", "grid_point", value}
    params = [c for c in frame.columns if c not in meta and frame[c].nunique() > 1
              and (str(c).startswith("param") or not pd.api.types.is_float_dtype(frame[c]))]
    heatmaps = []
    if value is not None and len(params) >= 2:
        for md in dict.fromkeys(frame["model"]) if "model" in frame else [None]:
            heatmaps.append({"model": md, "rows": params[0], "columns": params[1], "value": value})
    return {"intro": "Sensitivity of coverage and cost to the models' parameters: one row per grid point x book x "
                     "model.", "table": frame_table(frame), "heatmaps": heatmaps}


# --------------------------------------------------------------------------- 4. drill-down


def _coverage_tests(rep) -> list[dict[str, Any]]:
    es_tests = {"mcneil_frey", "acerbi_szekely_z1", "acerbi_szekely_z2", "du_escanciano_u", "du_escanciano_c"}
    frame = rep.to_frame()
    rows = []
    for key, r in frame.iterrows():
        rows.append({"test": r["name"] + (" (exact)" if getattr(rep.tests[key], "exact", False) else ""),
                     "level": rep.es_p if key in es_tests else rep.p, "statistic": r["statistic"],
                     "pvalue": r["pvalue"], "observations": r["n_obs"], "exceptions": r["n_exceptions"],
                     "reject_5pct": ("n/a" if not np.isfinite(r["pvalue"]) else "reject" if r["reject_5pct"]
                                     else "accept"), "note": r["note"]})
    return rows


_TEST_COLUMNS = [("test", "test", None), ("level", "level tested (tail probability)", "probability"),
                 ("statistic", "statistic", "ratio"), ("pvalue", "p-value", "pvalue"),
                 ("observations", "observations", "count"), ("exceptions", "exceptions", "count"),
                 ("reject_5pct", "at 5%", None), ("note", "note", None)]


#: The result columns the per-book figures read.
_DRAWN = ("date", "model", "margin", "loss", "breach", "hit", "common")


def render_drilldown(content: dict[str, Any], page: Page) -> str:
    """Per book: small multiples, episode zooms, rolling breach counts, the coverage tables."""
    d = page.data
    out = [_para(content["intro"])]
    for book in content["books"]:
        pf = book["portfolio"]
        # only the columns the figures draw: the rows travel to the executor's workers (pickled)
        rows = d.frame.loc[d.frame["portfolio"] == pf, [c for c in _DRAWN if c in d.frame.columns]]
        present = set(rows["model"].unique())  # unique() first: iterating the column row by row is slow
        models = [m for m in d.models if m in present]
        out.append(f'<h3 id="book-{_slug(pf)}">{esc(pf)}</h3>')
        if not models:
            out.append(_para("No model has a margin for this book."))
            continue
        out.append(render_table(book["summary"]))
        titles = panel_titles(book["cells"], rows, d.backtest.models)
        out.append(page.draw(fg.small_multiples, rows, models, titles, d.models, alt=f"Margins and losses: {pf}",
                             caption=f"{pf}: margin (line) and realised loss over the MPOR (grey), one model per "
                                     "panel on a shared axis; red dots are margin breaches (loss > margin), as many "
                                     "as each panel's first count; where the cell tests something else (an ES "
                                     "model's VaR at its level, or only the common dates) the panel says so; "
                                     "shaded: stress episodes."))
        # None (nothing drawn, no figure number) when no stress episode falls in the book's dates
        out.append(page.draw(fg.episode_zoom, rows, models, d.models, alt=f"Stress episodes: {pf}",
                             caption=f"{pf}: every model's margin through each stress episode in the book's dates."))
        common = rows[rows["common"]]
        levels = {m: d.level(m) for m in models}
        mpor = d.config.mpor_days
        tested = [m for m in models if m in {c["model"] for c in book["cells"]}]
        if tested and common["date"].nunique() > mpor:  # the book's dates, not its rows over models
            what = ("in the last 250 observations (all of them while fewer, with the bands of Binomial(n, p))"
                    if mpor == 1 else
                    f"in the last 250 observations of each of the {mpor} non-overlapping sub-samples (every "
                    f"{mpor}th observation; one line each, all of it while fewer) against the Bonferroni bands "
                    f"(one sub-sample's cumulative probability reaching 1 - 0.05/{mpor}, 1 - 0.0001/{mpor})")
            out.append(page.draw(fg.rolling_breaches, common[common["model"].isin(tested)], tested, levels,
                                 d.models, mpor, alt=f"Rolling breaches: {pf}",
                                 caption=f"{pf}: breaches of each model's VaR at its own level (of its margin for a "
                                         f"model that forecasts no VaR: rule-based and scenario-grid models) {what}, "
                                         "as of each "
                                         "date of the common sample, against the traffic-light bands (green, "
                                         "yellow, red; BCBS 1996): the count and bands the matrix cell's zone "
                                         "reads, which the last point shows."))
        for pair in book["tests"]:
            out.append(details(f"Every coverage test: {pf} / {pair['model']} (p = {pair['p']:g}, "
                               f"{pair['observations']:,} observations)", render_table(pair["table"]), cls="pair"))
    return "".join(out)


def panel_titles(cells: list[dict[str, Any]], rows: pd.DataFrame, models: dict[str, Any]) -> dict[str, str]:
    """The title of each model's panel of the drill-down: first the margin breaches drawn as dots.

    ``rows``: the book's result rows drawn (every date of each model); ``cells``: its verdict cells. The first
    count is the number of red dots (loss > margin over the dates drawn). When the cell counts the same thing
    (a VaR or rule-based model whose dates are the common sample), the title is that count against the
    expected one and the verdict; otherwise it adds what the cell tests: an ES model's exceptions of its VaR at
    its level, on the common dates.
    """
    out = {}
    for c in cells:
        md = c["model"]
        drawn = rows[rows["model"] == md]
        dots = int(drawn["breach"].sum())
        expected = f"{expected_count(c['expected_breaches'])} expected ({c['verdict']})"
        es = getattr(models.get(md), "margin_measure", None) == "es"
        head = f"{md}: {dots:,} margin breach{'' if dots == 1 else 'es'} (dots)"
        if not es and len(drawn) == c["observations"]:
            out[md] = f"{head} / {expected}"
            continue
        what = f"VaR {100 * (1 - c['p']):g}% exceptions" if es else "breaches"
        out[md] = (f"{head} on {len(drawn):,} dates; tested: {c['breaches']:,} {what} / {expected} on the "
                   f"{c['observations']:,} common dates")
    return out


@_section("drilldown", "Drill-down per book")(render_drilldown)
def build_drilldown(data: ReportData) -> dict[str, Any] | None:
    """Per book: the verdict cells as a table and every coverage test of every model."""
    cells = data.matrix["cells"]
    books = []
    for pf in data.books:
        mine = [c for c in cells if c["portfolio"] == pf and c["verdict"] not in ("n/a", "warm-up")]
        tests = []
        for c in mine:
            rep = data.reports.get((pf, c["model"]))
            if rep is not None:
                tests.append({"model": c["model"], "p": c["p"], "observations": c["observations"],
                              "table": table_data(_TEST_COLUMNS, _coverage_tests(rep))})
        books.append({"portfolio": pf, "cells": mine, "tests": tests, "summary": table_data(
            [("model", "model", None), ("label", "verdict", None), ("p", "level tested", "probability"),
             ("observations", "observations", "count"), ("breaches", "breaches tested", "count"),
             ("expected_breaches", "expected", "ratio"), ("margin_breaches", "margin breaches", "count"),
             ("too_many_pvalue", "too many (one-sided) p", "pvalue"),
             ("kupiec_pvalue", "Kupiec exact p", "pvalue"), ("kupiec_direction", "direction", None),
             ("christoffersen_ind_pvalue", "Christoffersen ind. exact p", "pvalue"),
             ("christoffersen_cc_pvalue", "Christoffersen cc exact p", "pvalue"),
             ("traffic_light_zone", "zone (last 250)", None),
             ("worst_window_breaches", "worst 250-window", "count"), ("worst_window_pvalue", "its p", "pvalue"),
             ("mean_margin", "average margin", "quote ccy"), ("mean_margin_pct_notional", "% of notional", "fraction"),
             ("largest_shortfall", "largest shortfall", "quote ccy"),
             ("largest_shortfall_date", "margin date", None)], [{**c, "label": cell_label(c)} for c in mine])})
    return {"intro": "For each book: every model's margin against the realised loss over the MPOR, the stress "
                     "episodes up close, the rolling breach count against the traffic-light bands and every coverage "
                     "test, each at the model's own level on the book's common sample.", "books": books}


# --------------------------------------------------------------------------- 5. parameter stability


_META = {"estimation_key", "date", "filter", "lookback", "asset", "window_start", "window_rows", "status",
         "iterations", "sigma2_next", "loglik", "long_run_var", "long_run_obs"}


def render_parameters(content: dict[str, Any], page: Page) -> str:
    """One figure per estimation (filter) and a summary table."""
    est = page.data.backtest.estimates
    out = [_para(content["intro"])]
    for chain in content["chains"]:
        rows = est[est["estimation_key"] == chain["key"]]
        out.append(f"<h3>{esc(chain['label'])}</h3>")
        out.append(page.draw(fg.parameter_stability, rows, chain["parameters"], chain["label"],
                             alt=f"Parameter stability: {chain['label']}",
                             caption=f"Estimated parameters of {chain['label']} at each fit date, per asset (the fit "
                                     "of the longest window of the date; grey dots: fits on the stationarity "
                                     "boundary; red crosses: failed fits, which keep the previous parameters). Fits "
                                     "by status: "
                                     + ", ".join(f"{k} {v:,}" for k, v in chain["status"].items()) + "."))
        out.append(render_table(chain["table"]))
    return "".join(out)


@_section("parameters", "Parameter stability")(render_parameters)
def build_parameters(data: ReportData) -> dict[str, Any] | None:
    """Present when the run recorded estimates (``BacktestResult.estimates``)."""
    est = data.backtest.estimates
    if est is None or len(est) == 0 or "estimation_key" not in est.columns:
        return None
    chains = []
    users = {}
    for label, model in data.backtest.models.items():
        key = getattr(model, "estimation_key", None)
        if key is not None:
            users.setdefault(repr(key), []).append(label)
    for key, rows in est.groupby("estimation_key", sort=False):
        params = [c for c in rows.columns if c not in _META and pd.api.types.is_numeric_dtype(rows[c])
                  and rows[c].notna().any()]
        summary = []
        for (asset, name) in [(a, p) for a in dict.fromkeys(rows["asset"]) for p in params]:
            v = rows.loc[rows["asset"] == asset, name].dropna()
            if len(v):
                summary.append({"asset": asset, "parameter": name, "fits": len(v), "median": float(v.median()),
                                "p5": float(v.quantile(0.05)), "p95": float(v.quantile(0.95)),
                                "min": float(v.min()), "max": float(v.max())})
        status = rows["status"].value_counts().to_dict() if "status" in rows else {}
        name = str(rows["filter"].iloc[0]) if "filter" in rows else str(key)
        label = f"{name} filter, used by " + ", ".join(users.get(key, ["(no model)"]))
        chains.append({"key": key, "label": label, "parameters": params, "status": {str(k): int(v)
                                                                                    for k, v in status.items()},
                       "table": table_data([("asset", "asset", None), ("parameter", "parameter", None),
                                            ("fits", "fits", "count"), ("median", "median", "ratio"),
                                            ("p5", "5th percentile", "ratio"), ("p95", "95th percentile", "ratio"),
                                            ("min", "min", "ratio"), ("max", "max", "ratio")], summary)})
    return {"intro": "Estimated parameters of the volatility filters over the run (one fit per asset and date): "
                     "jumps and drifts show where the estimates are unstable.", "chains": chains}


# --------------------------------------------------------------------------- 6. methodology, sample, limitations


def render_methodology(content: dict[str, Any], page: Page) -> str:
    """Conventions, then per model: summary, formula, parameters, sources, limitations."""
    out = ["<h3>Conventions</h3><ul>" + "".join(f"<li>{esc(c)}</li>" for c in content["conventions"]) + "</ul>"]
    for m in content["models"]:
        meth = m["methodology"]
        parts = [f'<div class="model"><h3 id="model-{_slug(m["label"])}">{esc(m["label"])}</h3>',
                 f"<p><b>{esc(meth['summary'])}</b> Registered name <code>{esc(meth['name'])}</code>; tested at "
                 f"p = {m['tested_p']:g}" + ("" if meth["tail_prob"] is not None else
                                             " (rule-based: the study's p)") + ".</p>"]
        if meth["formula"]:
            parts.append("<h4>Formula</h4>" + "".join(_formula(f) for f in meth["formula"]))
        if meth["description"]:
            parts.append("".join(_para(p) for p in meth["description"].split("\n\n")))
        parts.append("<h4>Parameters</h4>" + render_table(m["parameters"]))
        if meth["sources"]:
            parts.append("<h4>Sources</h4><ul>" + "".join(f"<li>{esc(s)}</li>" for s in meth["sources"]) + "</ul>")
        if meth["limitations"]:
            parts.append("<h4>Known limitations</h4><ul>" + "".join(f"<li>{esc(s)}</li>"
                                                                    for s in meth["limitations"]) + "</ul>")
        out.append("".join(parts) + "</div>")
    return "".join(out)


def _formula(latex: str) -> str:
    """A formula as an image (matplotlib mathtext) above its LaTeX source; the source alone if it cannot be drawn."""
    image = fg.formula_png(latex)
    source = f'<code class="formula">{esc(latex)}</code>'
    if image is None:
        return source
    return f'<div class="formula"><img class="formula" alt="{esc(latex)}" src="data:image/png;base64,{image}"/>' \
           f"{source}</div>"


def _methodology(model) -> dict[str, Any]:
    """A model's methodology as a dict.

    An overlaid model (``inner`` and ``overlays``: marginlab.models.OverlaidModel) is documented as its inner
    model plus each overlay (summary, formulas, parameters, sources, limitations).
    """
    inner, overlays = getattr(model, "inner", None), getattr(model, "overlays", ())
    base = inner if hasattr(inner, "methodology") else model
    meth = base.methodology().to_dict()
    for overlay in overlays if base is inner else ():
        if dataclasses.is_dataclass(overlay):
            om = methodology_of(overlay)
            meth["summary"] += f" Overlay {om.name}: {om.summary}"
            meth["formula"] = [*meth["formula"], *(f for f in om.formula if f not in meth["formula"])]
            meth["sources"] += [s for s in om.sources if s not in meth["sources"]]
            meth["limitations"] += [s for s in om.limitations if s not in meth["limitations"]]
            meth["parameters"] += [{**p.to_dict(), "name": f"{om.name}.{p.name}"} for p in om.parameters]
    return meth


def _value_text(v: Any) -> str:
    return "" if v is None else (v if isinstance(v, str) else repr(v))


@_section("methodology", "Methodology")(render_methodology)
def build_methodology(data: ReportData) -> dict[str, Any]:
    """Per model, its :meth:`~marginlab.models.MarginModel.methodology`; the study's conventions."""
    cfg = data.config
    models = []
    for label, model in data.backtest.models.items():
        meth = _methodology(model)
        rows = [{**p, "value": _value_text(p["value"]), "default": _value_text(p["default"])}
                for p in meth["parameters"]]
        models.append({"label": label, "methodology": meth, "tested_p": data.level(label),
                       "parameters": table_data([("name", "parameter", None), ("value", "value", None),
                                                 ("default", "default", None), ("type", "type", None),
                                                 ("description", "description", None)], rows)})
    conventions = [
        "Observation time: a daily row labelled D is the close at D 24:00 UTC (an hourly row labelled H, the close "
        "at H + 1 h); every input is used only at rows observed after it became known.",
        f"Margin period of risk: {cfg.mpor_days} observation(s) ({cfg.freq} data). The realised P&L is the full "
        "revaluation of the book held at t from t to t + MPOR (options aged and re-marked, or settled).",
        "Breach: realised loss over the MPOR > margin (strict). P&L profit > 0; loss = -P&L; margins are positive "
        "amounts in the quote currency (USD/USDT).",
        f"Levels: each model is tested at its own tail probability (a VaR 99% at p = 0.01, an ES 97.5% through its "
        f"VaR at p = 0.025); rule-based models at the study's p = {cfg.tail_prob:g}.",
        "Sample: models are compared on each book's common sample (dates where every model covering the book has a "
        "margin); MPOR > 1: tests on the non-overlapping sub-samples, combined by Bonferroni.",
        "Exact tests: finite-sample p-values (Kupiec, Christoffersen, binomial) from closed-form counts, not the "
        "chi-square approximation.",
    ]
    return {"conventions": conventions, "models": models}


def render_sample(content: dict[str, Any], page: Page) -> str:
    """Warm-up, n/a and estimation diagnostics."""
    out = [_para(content["intro"]), render_table(content["common_sample"], caption="Common sample per book")]
    out.append(render_table(content["diagnostics"], caption="Estimation diagnostics per model")
               if content["diagnostics"]["rows"] else
               _para("Estimation diagnostics: none (no model of this study fits parameters)."))
    if content["not_applicable"]["rows"]:
        out.append(details(f"Not applicable ({len(content['not_applicable']['rows'])} pairs)",
                           render_table(content["not_applicable"])))
    if content["warmup"]["rows"]:
        out.append(details(f"Warm-up dates ({len(content['warmup']['rows'])} pairs)", render_table(content["warmup"])))
    return "".join(out)


@_section("sample", "Sample and diagnostics")(render_sample)
def build_sample(data: ReportData) -> dict[str, Any]:
    """The sample behind the numbers: common samples, warm-up, n/a pairs, estimation diagnostics."""
    bt = data.backtest
    diag = [{"model": md, "fits": d.get("fits"), "failed": d.get("failed"), "boundary": d.get("boundary"),
             "reused": d.get("reused")} for md, d in bt.diagnostics.items()]
    return {"intro": f"{len(bt.frame):,} margin rows (book x model x date); compute times are in the run "
                     "metadata (Provenance). Risk-based models give no margin until they have their minimum "
                     "history (warm-up); a model that "
                     "does not cover a book's instruments is n/a, never given an invented number.",
            "common_sample": table_data([("portfolio", "book", None), ("dates", "dates", "count"),
                                         ("first", "first", None), ("last", "last", None)],
                                        data.matrix["common_sample"]),
            "diagnostics": table_data([("model", "model", None), ("fits", "filter fits", "count"),
                                       ("failed", "failed (previous parameters kept)", "count"),
                                       ("boundary", "on the stationarity boundary", "count"),
                                       ("reused", "reused between refits", "count")], diag),
            "not_applicable": table_data([("portfolio", "book", None), ("model", "model", None)],
                                         [{"portfolio": pf, "model": md} for pf, md in bt.not_applicable]),
            "warmup": table_data([("portfolio", "book", None), ("model", "model", None),
                                  ("dates", "dates without a margin", "count")],
                                 [{"portfolio": pf, "model": md, "dates": n} for (pf, md), n in bt.warmup.items()])}


def render_limitations(content: dict[str, Any], page: Page) -> str:
    """The limitations chapter, by the points of a comprehensive validation (RTS 153/2013 Art. 47(3), (5))."""
    out = [_para(content["intro"])]
    for item in content["items"]:
        out.append(f"<h3>{esc(item['title'])}</h3><ul>" + "".join(f"<li>{esc(x)}</li>" for x in item["points"])
                   + "</ul>")
    return "".join(out)


def _venue_rules(data: ReportData) -> dict[str, dict[str, str]]:
    """Model label -> its venue rule switches (:meth:`MarginModel.rule_switches`), for the venue replicas only."""
    out = {}
    for label, model in data.backtest.models.items():
        switches = model.rule_switches() if hasattr(model, "rule_switches") else None
        if switches is not None:
            out[label] = switches
    return out


def _venue_rule_points(data: ReportData) -> list[str]:
    """Limitations (c) on venue parameters, from the venue models' dated rules (one point per distinct rule)."""
    dates = data.backtest.frame["date"]
    first, last = (dates.min(), dates.max()) if len(dates) else (None, None)
    grouped: dict[tuple, list[str]] = {}
    for label, switches in _venue_rules(data).items():
        grouped.setdefault((data.backtest.models[label].name, tuple(switches.items())), []).append(label)
    points = []
    for (name, switches), labels in grouped.items():
        who = f"{and_list(labels)} ({name})"
        if not switches:
            points.append(f"{who}: the venue's parameters use one vintage per entry on every date; the venue changed "
                          "them over time (entries, sources and vintages: marginlab.models.venues).")
            continue
        said = []
        for day, what in switches:
            inside = (first is not None and first <= pd.Timestamp(day, tz="UTC") <= last + pd.Timedelta(days=1))
            said.append(f"on {day}, {what} ({'inside' if inside else 'outside'} this study's dates)")
        points.append(f"{who}: the venue's rule switches " + "; ".join(said) + ". The rates in force before the first "
                      "switch are backfilled to every earlier date (their start is not published), and every other "
                      "entry uses one vintage on every date (sources and vintages: marginlab.models.venues). A step "
                      "of the margin on a switch date is the venue's rule changing, not the model responding to the "
                      "market.")
    return points


#: The anti-procyclicality tools of EMIR RTS 153/2013 Art. 28(1), by overlay name.
_APC_TOOLS = {"apc_buffer": "(a) the margin buffer", "stressed_weight": "(b) the weight on stressed observations",
              "lookback_floor": "(c) the ten-year lookback"}


def _apc_points(bt) -> list[str]:
    """Limitations (c): which Art. 28(1) tools the study evidences and which it does not (when it runs any)."""
    used = {o.name for model in bt.models.values() for o in getattr(model, "overlays", ())} & set(_APC_TOOLS)
    if not used:
        return []
    missing = [t for name, t in _APC_TOOLS.items() if name not in used]
    return [f"Anti-procyclicality: this study runs EMIR RTS 153/2013 Art. 28(1) "
            f"{and_list([t for name, t in _APC_TOOLS.items() if name in used])}"
            + (f"; {and_list(missing)} {'is' if len(missing) == 1 else 'are'} not evidenced here (add the overlay "
               "to a model of the study to see it)." if missing else ".")]


@_section("limitations", "Limitations")(render_limitations)
def build_limitations(data: ReportData) -> dict[str, Any]:
    """What the evidence does not show, ordered as EMIR RTS 153/2013 Art. 47(3)(a)-(f) and 47(5)."""
    bt = data.backtest
    cells = data.matrix["cells"]
    counts = {v: sum(c["verdict"] == v for c in cells) for v in ("pass", "too many breaches", "over-margined",
                                                                 "n/a", "warm-up")}
    model_limits = [f"{label}: {lim}" for label, model in bt.models.items()
                    for lim in _methodology(model)["limitations"]]
    stress = getattr(data.study, "stress", None)
    items = [
        {"title": "(a) Conceptual soundness of the models",
         "points": model_limits or ["No model states a limitation in its documentation."]},
        {"title": "(b) Ongoing monitoring and benchmarking",
         "points": ["This report is a replay on history, not a live monitoring process: it benchmarks the models "
                    "against each other and against realised losses on the same books and dates.",
                    "The reference books are stylised strategies of $1m per leg (constant notional, rolled option "
                    "legs; an option book's gross notional, which the % of notional figures divide by, is larger), "
                    "not members' actual portfolios."]},
        {"title": "(c) Parameters and assumptions",
         "points": [*_venue_rule_points(data),
                    "Each model is replayed with the parameters of the study file; sensitivity to them is "
                    + ("shown in the parameter-sensitivity section." if getattr(data.study, "sweep", None) is not None
                       else "not shown in this report (marginlab sweep runs a grid of parameters)."),
                    "Random draws come from the study's seed; another seed moves Monte Carlo margins within their "
                    "simulation error.", *_apc_points(bt)]},
        {"title": "(d) Adequacy for the contract types",
         "points": [f"{counts['n/a']} book/model pairs are not applicable (the model does not cover the book's "
                    "instruments) and are not tested.",
                    "Options are European (Black-76, forward = spot, zero rates) marked at Deribit's DVOL index "
                    "(mapped to the at-the-money level for BTC once a chain snapshot is known; raw DVOL for ETH and "
                    "before June 2021): option premiums and vol exposure outside the chain months are biased.",
                    "Futures are priced at spot (no dated-futures curve in the bundled data)."]},
        {"title": "(e) Stress-testing scenarios",
         "points": ["No stress scenarios were run for this report; the shaded episodes in the drill-down show the "
                    "historical stress periods in the sample only." if stress is None else
                    "Stress coverage is reported in its section." if len(stress) else
                    "No requested stress scenario gave a stress loss for the study's books: no stress coverage is "
                    "reported (the stress section says why)."]},
        {"title": "(f) Outcomes of the tests",
         "points": [f"Verdicts: {counts['pass']} pass, {counts['too many breaches']} too many breaches, "
                    f"{counts['over-margined']} over-margined, {counts['warm-up']} without a margin (warm-up).",
                    "The exact tests assume independent breaches under the null; clustered breaches are tested by "
                    "Christoffersen and the duration tests (drill-down), not by the verdict.",
                    "A pass is not proof of adequacy: with a few hundred observations the tests have little power "
                    "against moderate under-coverage (e.g. 1.5% against 1%).",
                    "MPOR > 1: p-values are Bonferroni combinations over sub-samples (conservative)."
                    if data.config.mpor_days > 1 else
                    "One-observation MPOR: breaches do not overlap; studies/regulatory.toml runs a 2-day MPOR."]},
        {"title": "Pricing data (Art. 47(5))",
         "points": ["Daily data has no price at the 08:00 UTC option fixing: options expiring inside a daily MPOR "
                    "settle on the 00:00 close.",
                    "Implied-vol smile dynamics are not simulated: models shock the DVOL level only.",
                    "Funding is booked once a day from a daily mean print; hourly panels charge it up to 24 hours "
                    "late.",
                    "All data are real market history from third-party sources (datasets/NOTICE.md); the build "
                    "step's repairs are listed in datasets/data/BUILD_LOG.md."]},
    ]
    return {"intro": "What this evidence does not show, by the points a comprehensive model validation covers "
                     "(EMIR RTS 153/2013 Art. 47(3)(a)-(f) and 47(5)).", "items": items}


#: Marks around the report's run metadata (:func:`render_run`), the only part of the page that differs between
#: two runs of a study with the same seed.
RUN_MARKS = ("<!--run-metadata-->", "<!--/run-metadata-->")


def render_run(run: dict[str, Any]) -> str:
    """The run metadata block (results.json's ``run``: :func:`~marginlab.reports.provenance.run_metadata`)."""
    facts = [("Run started", run["started"] or "unknown"),
             ("Run time (loading, backtest and tests; writing this report comes after)",
              "unknown" if run["elapsed_s"] is None else f"{run['elapsed_s']:,.1f} s"),
             ("Backtest replay", "unknown" if run["replay_s"] is None else f"{run['replay_s']:,.1f} s"),
             ("Rerun into the same folder",
              run["command"] or "the study was given as an object, not a file: see its settings below")]
    times = table_data([("model", "model", None), ("seconds", "compute time", "seconds")],
                       [{"model": k, "seconds": v} for k, v in run["model_seconds"].items()])
    return (f'{RUN_MARKS[0]}<div class="run" id="run-metadata"><h3>Run metadata</h3><p class="note">The facts of '
            "this run: the only part of the report (and results.json's run block) that differs between runs with "
            "the same seed.</p><ul>" + "".join(f"<li><b>{esc(k)}:</b> <code>{esc(v)}</code></li>" for k, v in facts)
            + "</ul>" + (render_table(times, caption="Compute time per model (summed over tasks)")
                         if times["rows"] else "") + f"</div>{RUN_MARKS[1]}")


def render_provenance(content: dict[str, Any], page: Page) -> str:
    """Versions, data files, study file, seed, commit; the run metadata (run time, command)."""
    from .provenance import run_metadata

    p = content
    git = p["git"]
    facts = [("Seed", str(p["seed"])),
             ("Git commit", "unknown (not a git checkout, and the installed version records none)" if git is None
              else git["commit"] + (" (uncommitted changes)" if git["dirty"] else "")
              + (f" (recorded {git['recorded']})" if git.get("recorded") else "")),
             ("Platform", p["platform"])]
    out = ["<ul>" + "".join(f"<li><b>{esc(k)}:</b> <code>{esc(v)}</code></li>" for k, v in facts) + "</ul>"]
    out.append(render_table(table_data([("package", "package", None), ("version", "version", None)],
                                       [{"package": k, "version": v} for k, v in p["packages"].items()]),
                            caption="Package versions"))
    out.append(details(f"Data files ({sum(f['used'] for f in p['data_files'])} read by this study; sha256 from "
                       f"{p['manifest']})",
                       render_table(table_data([("file", "file", None), ("used", "read by this study", None),
                                                ("sha256", "sha256", None)], p["data_files"]))))
    text = p["study_text"] if p["study_text"] is not None else repr(p["study_config"])
    out.append(details(f"Study file: {p['study_file']}", f'<pre class="study">{esc(text)}</pre>', open_=False))
    out.append(render_run(run_metadata(page.data.study)))
    return "".join(out)


@_section("provenance", "Provenance")(render_provenance)
def build_provenance(data: ReportData) -> dict[str, Any]:
    """Package versions, data files with sha256, the study file verbatim, seed, commit (run facts: ``run``)."""
    from .provenance import provenance

    return provenance(data.config)

