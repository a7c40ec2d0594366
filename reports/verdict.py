"""The verdict: which models hold coverage on which books, and at what cost.

One cell per (book, model): the coverage verdict of the model at its own level
(:meth:`BacktestResult.coverage`, exact tests, on the book's common sample), the
breaches against the number expected, the Basel traffic-light zone (:data:`ZONE_LEGEND`:
the last 250 observations, all of them when fewer, per sub-sample with an MPOR above one
observation) and the average margin as a percentage of the book's gross notional.

Verdict rule (significance :data:`LEVEL` = 5%):

* **too many breaches** when the exact one-sided binomial test rejects,
  P(X >= x | n, p) < 5% (under-margining: the margin is below its stated level);
* **over-margined** when the exact two-sided Kupiec test rejects with fewer breaches
  than expected (the margin is above what its level needs: collateral at a cost);
* **pass** otherwise;
* **n/a** when the model does not cover the book's instruments (no number invented),
  **warm-up** when it never had enough history on the book's dates.

With an MPOR of h > 1 observations the tests run on the h non-overlapping sub-samples of
about n/h observations each, combined by Bonferroni: short sub-samples leave the test little
power. Each such cell states the reach of its test (:func:`mpor_reach`): the sub-sample size,
the smallest breach count in one sub-sample that the test rejects, and its power against a
breach rate of twice the level. A pass whose power is below :data:`POWER` is **not rejected
(low power)**, not "coverage holds"; its p-values are unchanged.

The matrix is a plain dict (``results.json``'s ``verdict``), rendered by the HTML
report, ``marginlab run`` and ``marginlab show`` alike (:func:`verdict_text`).
"""

from __future__ import annotations

import math
import shutil
import textwrap
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
from marginlab.datasets.conventions import date_format
from marginlab.validation.coverage import subsample_offsets
from marginlab.validation.engine import _tested_var
from scipy import stats

from .formatting import MISSING, and_list, expected_count, money, percent

__all__ = ["LEVEL", "POWER", "VERDICTS", "ZONE_LEGEND", "CELL_LEGEND", "cell_label", "verdict_of", "verdict_matrix",
           "verdict_sentences",
           "verdict_text", "mean_margin_pct", "common_sample", "mpor_reach", "low_power_pass"]

#: Significance of the verdict's tests.
LEVEL = 0.05
#: Power (against twice the level's breach rate) below which a pass with an MPOR of h > 1 is "low power".
POWER = 0.8
#: What a cell's traffic-light zone is (the rule of :func:`marginlab.validation.coverage.backtest`), for the legends.
ZONE_LEGEND = ("Traffic-light zone (G/Y/R): the Basel bands (BCBS 1996) for the breaches in the last 250 "
               "observations, or in all n when there are fewer: yellow when their cumulative probability under "
               "Binomial(250, p), or Binomial(n, p), reaches 95%, red at 99.99%. With an MPOR of h > 1 "
               "observations the same count is taken on each of the h non-overlapping sub-samples (every h-th "
               "observation: its last 250, or all when fewer) and combined by Bonferroni: yellow when one "
               "sub-sample's cumulative probability reaches 1 - 0.05/h, red at 1 - 0.0001/h.")
#: What a cell shows (terminal and page), for the legends.
CELL_LEGEND = ("verdict over the whole common sample (\"clustered\": Christoffersen's exact independence test "
               "rejects at 5% with a breach more likely after a breach); breaches / expected over that sample "
               "(\"VaR\" before the count: a model whose margin is its ES, counted as exceptions of its VaR at its "
               "own level p); traffic-light zone of the most recent 250 observations (all of them when fewer; per "
               "sub-sample with an MPOR above one observation, as below); average margin as % of gross notional.")
#: Verdicts, in the order of the legend.
VERDICTS = ("pass", "too many breaches", "over-margined", "n/a", "warm-up")
_SHORT = {"pass": "pass", "too many breaches": "TOO MANY", "over-margined": "over", "n/a": "n/a",
          "warm-up": "warm-up"}


def verdict_of(too_many_pvalue: float, kupiec_pvalue: float, kupiec_direction: str, level: float = LEVEL) -> str:
    """The verdict of one pair from its exact p-values (see module docstring)."""
    if too_many_pvalue < level:
        return "too many breaches"
    if kupiec_pvalue < level and kupiec_direction == "too few":
        return "over-margined"
    return "pass"


def mpor_reach(observations: int, mpor: int, p: float, level: float = LEVEL) -> dict[str, Any]:
    r"""What the MPOR h > 1 test of too many breaches can reject on ``observations`` rows.

    The exact one-sided test runs on the m non-overlapping sub-samples (every h-th row,
    :func:`~marginlab.validation.coverage.subsample_offsets`) and rejects when
    :math:`m \min_k P(X_k \ge x_k) < level`, X_k ~ Binomial(n_k, p). Returns ``subsample_observations``
    (the smallest n_k, about n/h), ``min_rejectable_breaches`` (the smallest count x in one such sub-sample
    with m P(X >= x) < level; None when no count rejects), ``power_2p`` (the probability of a rejection when
    breaches are independent at twice the level, 2p, the sub-samples taken as independent) and
    ``low_power`` (``power_2p`` below :data:`POWER`).
    """
    sizes = [len(range(k, observations, mpor)) for k in subsample_offsets(observations, mpor)]
    m = len(sizes)
    need = []
    for n_k in sizes:
        x = np.arange(n_k + 1)
        ok = np.flatnonzero(m * stats.binom.sf(x - 1, n_k, p) < level)
        need.append(int(x[ok[0]]) if ok.size else None)
    miss = np.prod([1.0 if x is None else float(stats.binom.cdf(x - 1, n_k, min(2 * p, 1.0)))
                    for x, n_k in zip(need, sizes, strict=True)])
    small = int(np.argmin(sizes))
    power = float(1.0 - miss)
    return {"subsamples": m, "subsample_observations": int(sizes[small]),
            "min_rejectable_breaches": need[small], "power_2p": power, "low_power": power < POWER}


def low_power_pass(cell: dict[str, Any]) -> bool:
    """A pass of an MPOR h > 1 test that had little power to reject (``low_power``, :func:`mpor_reach`)."""
    return cell["verdict"] == "pass" and bool(cell.get("low_power"))


def common_sample(backtest) -> dict[str, pd.DatetimeIndex]:
    """Each book's comparison sample: the dates on which every model with margins for it has one."""
    return {pf: backtest.common_dates(pf) for pf in backtest.frame["portfolio"].unique()}


def mean_margin_pct(rows: pd.DataFrame) -> float:
    """Average of margin / gross notional over the rows (NaN where the notional is zero)."""
    notional = rows["notional"].to_numpy(float)
    ok = notional > 0
    return float(np.mean(rows["margin"].to_numpy(float)[ok] / notional[ok])) if ok.any() else float("nan")


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _tested(rows: pd.DataFrame) -> str:
    """What a pair's coverage tests count: ``"margin"`` or ``"var"``.

    ``"margin"``: breaches of the margin held. ``"var"``: exceptions of the model's VaR at its level, where it
    differs from the margin (an ES model holds its ES: its VaR at the ES level is tested,
    :func:`~marginlab.validation.engine._tested_var`).
    """
    tested = _tested_var(rows).to_numpy(float)
    return "var" if len(rows) and not np.array_equal(tested, rows["margin"].to_numpy(float)) else "margin"


def verdict_books(backtest) -> list[str]:
    """The books of the verdict matrix: every portfolio of the run but member accounts, in run order.

    Member accounts (:class:`~marginlab.models.AccountBook`) are tested in the account-level view
    (pooled coverage per model, CPMI-IOSCO PQD 6.5), not one cell each.
    """
    accounts = set(backtest.accounts)
    names = dict.fromkeys([*backtest.frame["portfolio"].unique(), *(pf for pf, _ in backtest.not_applicable),
                           *(pf for pf, _ in backtest.warmup)])
    return [pf for pf in names if pf not in accounts]


def verdict_matrix(backtest, coverage: pd.DataFrame, books: list[str] | None = None,
                   level: float = LEVEL) -> dict[str, Any]:
    """The verdict matrix as a JSON-ready dict: books (default :func:`verdict_books`), models and one cell per pair.

    See the module docstring; ``accounts`` counts the run's member accounts (not in the matrix).
    """
    frame = backtest.frame
    when = date_format(getattr(backtest, "freq", "1d"))  # every time as the run's files write it (hours on 1h)
    models = list(backtest.models) or list(frame["model"].unique())
    if books is None:
        books = verdict_books(backtest)
    samples = common_sample(backtest)
    mpor = int(getattr(backtest, "mpor_days", 1))
    na = set(backtest.not_applicable)
    cells = []
    for pf in books:
        rows_pf = frame[frame["portfolio"] == pf]
        dates = samples.get(pf)
        for md in models:
            cell: dict[str, Any] = {"portfolio": pf, "model": md}
            if (pf, md) in na:
                cells.append({**cell, "verdict": "n/a"})
                continue
            if (pf, md) not in coverage.index:
                cells.append({**cell, "verdict": "warm-up"})
                continue
            c = coverage.loc[(pf, md)]
            rows = rows_pf[(rows_pf["model"] == md) & rows_pf["date"].isin(dates)]
            ind = _num(c["christoffersen_ind_pvalue"])
            direction = c.get("christoffersen_ind_direction", "")
            direction = direction if isinstance(direction, str) else ""
            shortfall = (rows["loss"] - rows["margin"])[rows["breach"]]
            worst = shortfall.idxmax() if len(shortfall) else None
            if mpor > 1:  # the reach of the sub-sample test beside its verdict (module docstring)
                cell.update(mpor_reach(int(c["observations"]), mpor, float(c["p"]), level))
            cells.append({**cell,
                          "verdict": verdict_of(float(c["too_many_pvalue"]), float(c["kupiec_pvalue"]),
                                                str(c["kupiec_direction"]), level),
                          "p": float(c["p"]), "observations": int(c["observations"]),
                          "breaches": int(c["breaches"]), "expected_breaches": float(c["expected_breaches"]),
                          "breach_rate": float(c["breach_rate"]), "kupiec_pvalue": _num(c["kupiec_pvalue"]),
                          "kupiec_direction": str(c["kupiec_direction"]),
                          "too_many_pvalue": _num(c["too_many_pvalue"]),
                          "christoffersen_cc_pvalue": _num(c["christoffersen_cc_pvalue"]),
                          "christoffersen_ind_pvalue": ind,
                          "christoffersen_ind_direction": direction,
                          "clustered": ind is not None and ind < level and direction == "clustered",
                          "traffic_light_zone": str(c["traffic_light_zone"]),
                          "worst_window_breaches": int(c["worst_window_breaches"]),
                          "worst_window_pvalue": _num(c["worst_window_pvalue"]),
                          "tested": _tested(rows),
                          "margin_breaches": int(rows["breach"].sum()),
                          "margin_breach_rate": float(rows["breach"].mean()) if len(rows) else None,
                          "mean_margin": float(rows["margin"].mean()) if len(rows) else None,
                          "mean_margin_pct_notional": _num(mean_margin_pct(rows)) if len(rows) else None,
                          "largest_shortfall": float(shortfall.max()) if len(shortfall) else 0.0,
                          "largest_shortfall_date": None if worst is None else
                          pd.Timestamp(rows.loc[worst, "date"]).strftime(when),
                          "largest_shortfall_pct_notional": None if worst is None else
                          _num(shortfall.max() / rows.loc[worst, "notional"])})
    sample = []
    for pf in books:
        d = samples.get(pf)
        sample.append({"portfolio": pf, "dates": 0 if d is None else len(d),
                       "first": None if d is None or not len(d) else d[0].strftime(when),
                       "last": None if d is None or not len(d) else d[-1].strftime(when)})
    out = {"level": level, "books": books, "models": models, "cells": cells, "common_sample": sample,
           "accounts": len(backtest.accounts),
           "rule": ("Each model at its own level p (its tail probability; rule-based models at the study's p), "
                    "exact tests on the book's common sample at 5%: too many breaches = one-sided binomial "
                    "P(X >= x) < 5%; over-margined = two-sided Kupiec rejects with fewer breaches than "
                    "expected; pass otherwise.")}
    out["sentences"] = verdict_sentences(out)
    return out


def _cells(matrix: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["portfolio"], c["model"]): c for c in matrix["cells"]}


def verdict_sentences(matrix: dict[str, Any]) -> list[str]:
    """Three sentences from the numbers: who holds coverage where, who over-margins, the largest shortfall.

    Coverage holds on a book when the model has no significant excess of breaches (verdict pass or
    over-margined: an over-margined book is covered, at a cost, and is counted and named as such), except a
    pass whose MPOR h > 1 test had low power (``low_power``, :func:`mpor_reach`): that one is named as not
    rejected, with the sub-sample size, the smallest rejectable count and the power.
    """
    cells = [c for c in matrix["cells"] if c["verdict"] in ("pass", "too many breaches", "over-margined")]
    by_model: dict[str, list[dict]] = {}
    for c in cells:
        by_model.setdefault(c["model"], []).append(c)
    if not by_model:
        if not matrix["books"] and matrix.get("accounts"):
            return [f"No reference book in this study: its {matrix['accounts']:,} member accounts are tested in the "
                    "account-level view (pooled coverage per model, CPMI-IOSCO PQD 6.5).", "", ""]
        return ["No model produced a margin that could be tested.", "", ""]
    # 1. coverage: the books without too many breaches (pass or over-margined), models ranked by their share;
    # an over-margined book is covered (fewer breaches than the level allows), counted and named as such
    def covered(m: str) -> int:
        return sum(c["verdict"] != "too many breaches" and not low_power_pass(c) for c in by_model[m])

    def over_count(m: str) -> int:
        return sum(c["verdict"] == "over-margined" for c in by_model[m])

    ranked = sorted(by_model, key=lambda m: (-covered(m) / len(by_model[m]), m))
    holds = [f"{m} on {covered(m)} of {len(by_model[m])} books"
             + (f" ({over_count(m)} of them over-margined)" if over_count(m) else "") for m in ranked]
    everywhere = [m for m in ranked if covered(m) == len(by_model[m])]
    first = (f"Coverage holds (no significant excess of breaches: exact one-sided test at {matrix['level']:.0%}, "
             f"each model at its own level) for {and_list(holds)}; "
             + (f"{and_list(everywhere)} hold{'s' if len(everywhere) == 1 else ''} it on every book "
                f"{'it covers' if len(everywhere) == 1 else 'they cover'}."
                if everywhere else "no model holds it on every book it covers."))
    if any(c.get("tested") == "var" for c in cells):
        first += (" For a model whose margin is its ES, the count is of exceptions of its VaR at the ES level (the "
                  "ES itself is the margin held).")
    weak_by_model = {m: [c for c in by_model[m] if low_power_pass(c)] for m in ranked}
    parts = []
    for m, v in weak_by_model.items():
        if v:
            need = [c["min_rejectable_breaches"] for c in v]
            parts.append(f"{m} on {len(v)} book{'s' if len(v) > 1 else ''}: not rejected (low power: n/h = "
                         f"{min(c['subsample_observations'] for c in v)} per sub-sample; "
                         + (f"a rejection needs {max(need)} breaches in one of {v[0]['subsamples']} sub-samples; "
                            if None not in need else "no breach count can reject; ")
                         + f"power {percent(max(c['power_2p'] for c in v))} against twice the level)")
    if parts:
        first += " Coverage not shown, for " + "; ".join(parts) + "."
    # 2. over-margining, with the cost
    over = {m: [c for c in v if c["verdict"] == "over-margined"] for m, v in by_model.items()}
    over = {m: v for m, v in over.items() if v}
    if over:
        parts = []
        for m in sorted(over, key=lambda m: -len(over[m])):
            pct = [c["mean_margin_pct_notional"] for c in over[m] if c.get("mean_margin_pct_notional") is not None]
            parts.append(f"{m} on {len(over[m])} book{'s' if len(over[m]) > 1 else ''}"
                         + (f" ({percent(float(np.mean(pct)))})" if pct else ""))
        second = ("Over-margined (fewer breaches than its level allows, collateral held at a cost; in brackets the "
                  f"average margin as % of notional, the mean over those books): {and_list(parts)}.")
    else:
        second = "No model is over-margined: none has significantly fewer breaches than its level allows."
    # 3. the largest shortfall
    worst = max(cells, key=lambda c: c.get("largest_shortfall") or 0.0)
    if (worst.get("largest_shortfall") or 0.0) > 0:
        pct = worst.get("largest_shortfall_pct_notional")
        third = (f"The largest shortfall: {worst['model']} on {worst['portfolio']}, where the loss exceeded the "
                 f"margin by {money(worst['largest_shortfall'])} USD"
                 + (f" ({percent(pct)} of notional)" if pct is not None else "")
                 + f" on the margin called on {worst['largest_shortfall_date']} (the loss is over the MPOR after it).")
        under = Counter(c["model"] for c in cells if c["verdict"] == "too many breaches")
        if under:
            ranked_under = sorted(under.items(), key=lambda x: (-x[1], x[0]))
            third += " Too many breaches: " + and_list(
                [f"{m} on {n} book{'s' if n > 1 else ''}" for m, n in ranked_under]) + "."
    else:
        third = "No loss exceeded its margin on the compared dates."
    return [first, second, third]


def cell_label(cell: dict[str, Any], short: bool = False) -> str:
    """The verdict as a cell shows it (``short``: as the terminal's narrow columns do, "TOO MANY", "over").

    ``pass (low power)`` (:func:`low_power_pass`), and ``, clustered`` after a pass or over-margined verdict whose
    breaches cluster (Christoffersen's exact independence test rejects at the verdict's level with a breach more
    likely after a breach: the count is right, the timing is not; with an MPOR of h > 1 observations, on the
    sub-sample the Bonferroni combination rests on).
    """
    v = cell["verdict"]
    label = "pass (low power)" if low_power_pass(cell) else _SHORT[v] if short else v
    return label + (", clustered" if cell.get("clustered") and v in ("pass", "over-margined") else "")


def cell_text(cell: dict[str, Any]) -> str:
    """A cell in one line: verdict, breaches / expected, zone, average margin % of notional.

    ``VaR`` before the count marks an ES model's VaR exceptions; the zone is that of :data:`ZONE_LEGEND`.
    """
    v = cell["verdict"]
    if v in ("n/a", "warm-up"):
        return v
    pct = cell.get("mean_margin_pct_notional")
    short = cell_label(cell, short=True)
    tested = "VaR " if cell.get("tested") == "var" else ""
    return (f"{short} {tested}{cell['breaches']:,}/{expected_count(cell['expected_breaches'])} "
            f"{cell['traffic_light_zone'][0].upper()} {percent(pct, 1) if pct is not None else MISSING}")


def verdict_text(matrix: dict[str, Any], width: int | None = None) -> str:
    """The verdict matrix as plain text for a terminal (books as rows, models as columns).

    Columns that do not fit in ``width`` characters (default: the terminal's width, 120 when unknown)
    continue in a further block, each block repeating the book names.
    """
    width = width or shutil.get_terminal_size((120, 24)).columns
    cells = _cells(matrix)
    books, models = matrix["books"], matrix["models"]
    names = [pf if len(pf) <= 40 else pf[:39] + "\u2026" for pf in books]
    first = max([len("book"), *(len(n) for n in names)])
    columns = []
    for md in models:
        texts = [cell_text(cells.get((pf, md), {"verdict": "n/a"})) for pf in books]
        columns.append((md, texts, max([len(md), *(len(t) for t in texts)])))
    blocks, current, used = [], [], first
    for col in columns:
        if current and used + 2 + col[2] > width:
            blocks.append(current)
            current, used = [], first
        current.append(col)
        used += 2 + col[2]
    blocks.append(current)
    out = []
    for block in blocks if books else []:  # a study of member accounts only has no matrix
        widths = [first, *(w for _, _, w in block)]

        def line(r: list[str], widths=widths) -> str:
            return "  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True)).rstrip()

        out += [line(["book", *(md for md, _, _ in block)]), line(["-" * w for w in widths])]
        out += [line([n, *(texts[k] for _, texts, _ in block)]) for k, n in enumerate(names)]
        out.append("")
    legend = (f"cell: {CELL_LEGEND} {ZONE_LEGEND} {matrix['rule']}")
    fill = max(60, min(width, 110))
    wrap = [textwrap.fill(s, fill, break_on_hyphens=False)
            for s in [*matrix.get("sentences", []), legend if books else ""] if s]
    if not books:
        return "\n".join(wrap)
    return "\n".join([*out, *wrap[:-1], "", wrap[-1]])
