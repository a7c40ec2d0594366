"""The report's figures (matplotlib, embedded as PNG).

Every figure is drawn at most 12.4 inches wide at 100 dpi (1,240 pixels: legible at
a 1,300-pixel page without scaling), with 9-10 point text. User text (book and model
names) is drawn as plain text: matplotlib's ``$...$`` math parsing is off.
Functions take plain frames and return a matplotlib figure; :func:`png` encodes it.
"""

from __future__ import annotations

import base64
import io
import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd

__all__ = ["EPISODES", "png", "formula_png", "plotting", "frontier", "small_multiples", "episode_zoom",
           "rolling_breaches", "parameter_stability", "bars", "heatmap", "zone_thresholds", "zone_counts", "WIDTH"]

#: Figure width in inches (x 100 dpi = pixels).
WIDTH = 12.4
DPI = 100

#: Stress episodes shaded on the time series and zoomed on: (name, first day, last day), UTC.
EPISODES: tuple[tuple[str, str, str], ...] = (
    ("March 2020 (COVID crash)", "2020-03-05", "2020-03-25"),
    ("May 2021 (China ban, leverage flush)", "2021-05-10", "2021-05-31"),
    ("May/June 2022 (LUNA, Celsius, 3AC)", "2022-05-05", "2022-06-30"),
    ("November 2022 (FTX)", "2022-11-05", "2022-11-20"),
)

#: Model colours: matplotlib's tab10 without its grey (the realised loss is drawn in grey), black and five of tab20's
#: light colours (not its light green, drawn on the zone figure's green band): 15 colours, so the default study's 13
#: models never share one (it had 10, three pairs shared).
_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
            "#000000", "#aec7e8", "#ff9896", "#c5b0d5", "#ffbb78", "#c49c94"]
_RC = {"text.parse_math": False, "font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10,
       "xtick.labelsize": 9, "ytick.labelsize": 9, "legend.fontsize": 9, "axes.spines.top": False,
       "axes.spines.right": False, "figure.dpi": DPI, "savefig.dpi": DPI}


@contextmanager
def plotting() -> Iterator[object]:
    """``matplotlib.pyplot`` on the Agg backend with the report's style (math text off).

    The style is matplotlib's defaults plus :data:`_RC`, whatever the calling process set (a notebook's
    style, a matplotlibrc): a figure is the same bytes here and on a worker process.
    """
    import matplotlib
    import matplotlib.style

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.style.context(["default", _RC]):
        yield plt


def fixed_layout(fig, *, left: float = 0.85, right: float = 0.15, top: float = 0.35, bottom: float = 0.55,
                 hspace: float = 0.08, wspace: float = 0.2) -> None:
    """Set the figure's margins in inches.

    Used instead of ``tight_layout``, which draws the whole figure once more to measure it (most of the
    report's drawing time on the per-book figures). The defaults fit money and date tick labels.
    """
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=left / w, right=1 - right / w, top=1 - top / h, bottom=bottom / h, hspace=hspace,
                        wspace=wspace)


def colour(k: int) -> str:
    """The k-th model colour (stable across figures: models keep their colour)."""
    return _COLOURS[k % len(_COLOURS)]


def png(fig) -> str:
    """The figure as base64 PNG (closed afterwards); no timestamp metadata, so output is repeatable."""
    buf = io.BytesIO()
    for ax in fig.axes:
        _fixed_labels(ax)
    with plotting() as plt:  # saving reads the style too (face colour, ...)
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
        plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def formula_png(latex: str) -> str | None:
    """A LaTeX formula drawn by matplotlib's mathtext as base64 PNG, or None when mathtext cannot parse it."""
    from matplotlib import mathtext

    buf = io.BytesIO()
    try:
        with plotting():
            mathtext.math_to_image(f"${latex}$", buf, dpi=110, format="png")
    except (ValueError, RuntimeError):
        return None
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _dots(ax, x, y, *, s: float, color, zorder: float, **kw) -> None:
    """Dots of one colour and size: what ``ax.scatter(x, y, s=s, color=color)`` draws, as one marker line.

    A marker-only ``Line2D`` is a fraction of a scatter's cost (no per-point colour or size arrays); the
    marker is ``s`` points squared in area like scatter's, its edge the face colour 1.5 points wide
    (scatter's default) unless ``markeredgecolor``/``markeredgewidth`` say otherwise.
    """
    kw.setdefault("markeredgewidth", 1.5)
    ax.plot(x, y, linestyle="none", marker="o", markersize=float(np.sqrt(s)), color=color, zorder=zorder, **kw)


def _fixed_labels(ax) -> None:
    """Skip matplotlib's automatic placement of the axes' empty x/y labels (and of a title at y = 1).

    Placing an axis label measures every tick label of the axis (and of its siblings) at each draw; an empty
    label draws nothing wherever it is, so it is pinned instead. Titles are given ``y=1.0`` where they are set
    (their position without a top axis or an offset text over them), which skips the same measuring.
    """
    if not ax.xaxis.label.get_text():
        ax.xaxis.set_label_coords(0.5, 0.0)
    if not ax.yaxis.label.get_text():
        ax.yaxis.set_label_coords(0.0, 0.5)


def _by_model(rows: pd.DataFrame) -> dict:
    """``rows`` split by model (each model's rows in their order): one pass, not a string comparison per model."""
    return {md: r for md, r in rows.groupby("model", sort=False)}


def _money_axis(ax) -> None:
    from matplotlib.ticker import FuncFormatter

    def fmt(v, _):
        a = abs(v)
        if a >= 1e6:
            return f"{v / 1e6:,.1f}M"
        if a >= 1e3:
            return f"{v / 1e3:,.0f}k"
        return f"{v:,.0f}"

    ax.yaxis.set_major_formatter(FuncFormatter(fmt))


def _pct_axis(ax, axis: str = "y") -> None:
    from matplotlib.ticker import PercentFormatter

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(PercentFormatter(1.0, decimals=None))


def _x(dates) -> np.ndarray:
    """Dates as naive UTC ``datetime64`` for matplotlib's x axis.

    Matplotlib converts tz-aware dates one by one (an ``astimezone`` per point: ~14 s of the default report's
    drawing), naive ``datetime64`` in one vectorised step; the axis shows the same UTC dates.
    """
    if isinstance(dates, pd.Timestamp):
        return np.datetime64((dates.tz_convert("UTC").tz_localize(None) if dates.tzinfo else dates).value, "ns")
    idx = pd.DatetimeIndex(dates)
    return (idx.tz_convert("UTC").tz_localize(None) if idx.tz is not None else idx).to_numpy()


def _dates(ax) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(minticks=3, maxticks=6)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _shade(ax, start: pd.Timestamp, end: pd.Timestamp) -> None:
    for _, a, b in EPISODES:
        a, b = pd.Timestamp(a, tz="UTC"), pd.Timestamp(b, tz="UTC")
        if b >= start and a <= end:
            ax.axvspan(_x(a), _x(b), color="#f4b183", alpha=0.35, lw=0, zorder=0)


def _two_lines(text: str, width: int) -> str:
    """``text`` on at most two lines of ``width`` characters (an ellipsis ends what does not fit)."""
    lines = textwrap.wrap(text, width)
    if len(lines) <= 1:
        return text
    return lines[0] + "\n" + textwrap.shorten(" ".join(lines[1:]), width, placeholder="\u2026")


def frontier(points: pd.DataFrame, title: str, target: float | None, models: Sequence[str]):
    """Breach rate (y) against average margin as % of notional (x), one point per model.

    ``points`` has columns ``model``, ``margin_pct`` and ``breach_rate`` (and ``book`` for one panel per book).
    """
    with plotting() as plt:
        books = list(dict.fromkeys(points["book"])) if "book" in points else [title]
        ncol = min(3, len(books))
        nrow = int(np.ceil(len(books) / ncol))
        shown = [md for md in models if md in set(points["model"])]
        legend_rows = int(np.ceil((len(shown) + (target is not None)) / 4))
        below = 0.45 + 0.22 * legend_rows  # inches under the panels: the x label and the legend (4 columns)
        height = 3.3 * nrow + 0.3 + below
        fig, axes = plt.subplots(nrow, ncol, figsize=(WIDTH, height), squeeze=False)
        for k, book in enumerate(books):
            ax = axes[k // ncol][k % ncol]
            rows = points[points["book"] == book] if "book" in points else points
            for md, r in rows.groupby("model", sort=False):
                _dots(ax, r["margin_pct"], r["breach_rate"], s=46, color=colour(list(models).index(md)), zorder=3,
                      markeredgecolor="k", markeredgewidth=0.4, label=md)
            if target is not None:
                ax.axhline(target, color="k", ls="--", lw=0.8)
            _pct_axis(ax, "x")
            _pct_axis(ax, "y")
            top_y = max(float(rows["breach_rate"].max()), target or 0.0)
            ax.set_ylim(0, top_y * 1.12 if top_y > 0 else 0.01)
            ax.set_xlim(0, max(float(rows["margin_pct"].max()), 0.001) * 1.12)
            ax.grid(alpha=0.3)
            ax.set_title(_two_lines(book, 100 if ncol == 1 else 48), y=1.0)
            if k % ncol == 0:
                ax.set_ylabel("breach rate")
            if k // ncol == nrow - 1:
                ax.set_xlabel("average margin, % of notional")
        for k in range(len(books), nrow * ncol):
            axes[k // ncol][k % ncol].axis("off")
        handles = [plt.Line2D([], [], marker="o", ls="", color=colour(k), markeredgecolor="k", label=md)
                   for k, md in enumerate(models) if md in set(shown)]
        if target is not None:
            handles.append(plt.Line2D([], [], ls="--", color="k", label=f"target {target:.2%} (the study's p)"))
        fig.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)), frameon=False,
                   bbox_to_anchor=(0.5, 0.0))
        fig.tight_layout(rect=(0, (below - 0.3) / height, 1, 1))
        return fig


def small_multiples(rows: pd.DataFrame, models: Sequence[str], titles: dict[str, str], all_models: Sequence[str]):
    """One panel per model (shared x and y): margin, realised loss over the MPOR, breaches; episodes shaded.

    ``rows`` are one book's result rows (``date, model, margin, loss, breach``).
    """
    with plotting() as plt:
        n = len(models)
        fig, axes = plt.subplots(n, 1, figsize=(WIDTH, 1.25 * n + 0.9), sharex=True, sharey=True, squeeze=False)
        start, end = rows["date"].min(), rows["date"].max()
        by_model = _by_model(rows)
        for k, md in enumerate(models):
            ax = axes[k][0]
            r = by_model.get(md, rows.iloc[:0])
            _shade(ax, start, end)
            ax.fill_between(_x(r["date"]), 0, r["loss"].clip(lower=0), color="0.55", lw=0, step="post",
                            label="realised loss over the MPOR")
            ax.plot(_x(r["date"]), r["margin"], color=colour(list(all_models).index(md)), lw=1.1, label="margin")
            b = r[r["breach"]]
            _dots(ax, _x(b["date"]), b["loss"], s=14, color="#c00000", zorder=4, label="breach (loss > margin)")
            ax.text(0.005, 0.93, titles.get(md, md), transform=ax.transAxes, va="top", fontsize=9.5,
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})
            _money_axis(ax)
            ax.grid(alpha=0.25)
        shown = rows[rows["model"].isin(list(models))]
        top = float(np.nanmax(np.r_[shown["margin"].to_numpy(float), shown["loss"].to_numpy(float), 1.0]))
        axes[0][0].set_ylim(0, top * 1.05)  # shared by every panel
        handles = [plt.Rectangle((0, 0), 1, 1, color="0.55", label="realised loss over the MPOR"),
                   plt.Line2D([], [], color="0.35", lw=1.1, ls=(0, (4, 1.5)), label="margin (in the model's colour)"),
                   plt.Line2D([], [], marker="o", ls="", color="#c00000", label="breach (loss > margin)"),
                   plt.Rectangle((0, 0), 1, 1, color="#f4b183", alpha=0.35, label="stress episode")]
        fig.supylabel("quote currency")
        fixed_layout(fig, left=1.0, top=0.5, bottom=0.4, hspace=0.08)
        fig.legend(handles=handles, loc="upper center", ncol=4, frameon=False)
        return fig


def episode_zoom(rows: pd.DataFrame, models: Sequence[str], all_models: Sequence[str]):
    """One panel per stress episode inside the book's dates: every model's margin and the realised loss."""
    start, end = rows["date"].min(), rows["date"].max()
    episodes = [(n, pd.Timestamp(a, tz="UTC"), pd.Timestamp(b, tz="UTC")) for n, a, b in EPISODES
                if pd.Timestamp(b, tz="UTC") >= start and pd.Timestamp(a, tz="UTC") <= end]
    if not episodes:
        return None
    with plotting() as plt:
        import matplotlib.dates as mdates

        fig, axes = plt.subplots(1, len(episodes), figsize=(WIDTH, 3.6), squeeze=False, sharey=True)
        for k, (name, a, b) in enumerate(episodes):
            ax = axes[0][k]
            pad = pd.Timedelta(days=5)
            win = rows[(rows["date"] >= a - pad) & (rows["date"] <= b + pad)]
            loss = win.drop_duplicates("date")
            by_model = _by_model(win)
            ax.axvspan(_x(a), _x(b), color="#f4b183", alpha=0.25, lw=0, zorder=0)
            ax.bar(_x(loss["date"]), loss["loss"].clip(lower=0), width=0.8, color="0.6", label="realised loss")
            for md in models:
                r = by_model.get(md, win.iloc[:0])
                ax.plot(_x(r["date"]), r["margin"], color=colour(list(all_models).index(md)), lw=1.3, label=md)
                bb = r[r["breach"]]
                _dots(ax, _x(bb["date"]), bb["loss"], s=16, color="#c00000", zorder=4)
            ax.set_title(name, y=1.0)
            ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=5))
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b\n%Y"))
            _money_axis(ax)
            ax.grid(alpha=0.25)
        handles = [plt.Line2D([], [], color=colour(list(all_models).index(md)), lw=1.5, label=md) for md in models]
        handles += [plt.Rectangle((0, 0), 1, 1, color="0.6", label="realised loss"),
                    plt.Line2D([], [], marker="o", ls="", color="#c00000", label="breach")]
        fig.legend(handles=handles, loc="lower center", ncol=min(5, len(handles)), frameon=False)
        nrows_legend = int(np.ceil(len(handles) / 5))
        fixed_layout(fig, top=0.3, bottom=0.6 + 0.25 * nrows_legend, wspace=0.08)
        return fig


def zone_thresholds(p: float, window: int = 250, m: int = 1) -> tuple[int, int]:
    """Smallest breach counts in ``window`` observations that are yellow and red.

    BCBS 1996: cumulative probabilities 0.95 and 0.9999 under Binomial(window, p). With ``m`` sub-samples
    (an MPOR of h > 1 observations) the Bonferroni rule of :func:`marginlab.validation.coverage.backtest`:
    one sub-sample's cumulative probability reaches 1 - 0.05/m and 1 - 0.0001/m
    (:func:`marginlab.validation.coverage.zone_bands`).
    """
    from marginlab.validation.coverage import zone_bands

    return zone_bands(p, int(window), m)


def zone_counts(hits: pd.Series, p: float, mpor: int = 1, window: int = 250) -> pd.DataFrame:
    """The breach count the traffic-light zone of a verdict cell reads, as it stood at each date.

    ``hits``: one pair's exceptions (bool) on its dates, in date order. At each date, with the sample ending
    there: the exceptions in the last ``window`` observations, or in all of them when fewer; with an MPOR of
    h > 1 observations, in the last ``window`` observations of the date's non-overlapping sub-sample (every
    h-th observation; the ``m`` sub-samples of :func:`marginlab.validation.coverage.subsample_offsets`),
    against the bands of :func:`marginlab.validation.coverage.zone_bands` for that many observations and
    ``m``. The zone of each sub-sample's last row is its zone in the cell (the cell's zone is the worst of
    them: :func:`marginlab.validation.coverage.backtest`).

    Returns a frame with columns ``date``, ``subsample``, ``observations`` (in the count), ``count``,
    ``yellow``, ``red`` (the smallest yellow and red counts) and ``zone``, one row per date.
    """
    from marginlab.validation.coverage import subsample_offsets, zone_bands

    h = np.asarray(hits, dtype=bool)
    n, mpor = h.size, int(mpor)
    pos = np.arange(n)
    sub, j = pos % mpor, pos // mpor
    sizes = np.array([len(range(k, n, mpor)) for k in range(mpor)])
    valid = np.zeros(mpor, bool)
    valid[subsample_offsets(n, mpor)] = True
    m = int(valid.sum())
    counts = np.zeros(n, dtype=int)
    for k in np.flatnonzero(valid):
        c = np.cumsum(np.r_[0, h[k::mpor].astype(int)])
        jj = np.arange(sizes[k])
        counts[k::mpor] = c[jj + 1] - c[np.maximum(jj + 1 - window, 0)]
    w = np.minimum(j + 1, window)
    yellow, red = zone_bands(p, w, m)
    zone = np.where(counts >= red, "red", np.where(counts >= yellow, "yellow", "green"))
    out = pd.DataFrame({"date": hits.index if isinstance(hits, pd.Series) else pos, "subsample": sub,
                        "observations": w, "count": counts, "yellow": yellow, "red": red, "zone": zone})
    return out[valid[sub]].reset_index(drop=True)


def rolling_breaches(rows: pd.DataFrame, models: Sequence[str], levels: dict[str, float],
                     all_models: Sequence[str], mpor: int = 1, window: int = 250):
    """Each model's breach count against its traffic-light bands, as the verdict cell's zone reads it.

    :func:`zone_counts` at every date of the book's common sample (``rows``: ``date, model, hit``): the
    exceptions of the model's VaR at its own level in the last ``window`` observations (all of them while
    fewer, with the bands of Binomial(n, p)); with an MPOR above one observation, one line per
    non-overlapping sub-sample against the Bonferroni bands. The last point of each line is in the zone the
    verdict cell shows (the worst sub-sample's, when several), which the panel states.
    """
    with plotting() as plt:
        ncol = min(4, len(models))
        nrow = int(np.ceil(len(models) / ncol))
        fig, axes = plt.subplots(nrow, ncol, figsize=(WIDTH, 2.3 * nrow + 0.5), squeeze=False, sharex=True)
        order = {"green": 0, "yellow": 1, "red": 2}
        by_model = _by_model(rows)
        for k, md in enumerate(models):
            ax = axes[k // ncol][k % ncol]
            r = by_model.get(md, rows.iloc[:0]).sort_values("date", kind="stable")
            z = zone_counts(pd.Series(r["hit"].to_numpy(bool), index=r["date"].to_numpy()), levels[md], mpor, window)
            x = _x(z["date"])
            top = max(float(z["red"].max()) + 2, float(z["count"].max()) + 1) if len(z) else 2.0
            y0 = np.maximum(z["yellow"].to_numpy(float) - 0.5, 0)
            y1 = np.maximum(z["red"].to_numpy(float) - 0.5, 0)
            ax.fill_between(x, 0, y0, color="#d9f2e0", lw=0, step="post")
            ax.fill_between(x, y0, y1, color="#fff0c2", lw=0, step="post")
            ax.fill_between(x, y1, top, color="#f8d0cc", lw=0, step="post")
            for _, s in z.groupby("subsample", sort=True):
                ax.step(_x(s["date"]), s["count"].to_numpy(), where="post",
                        color=colour(list(all_models).index(md)), lw=1.2 if mpor == 1 else 0.8)
            ax.set_ylim(0, top)
            ax.set_title(md if len(md) <= 34 else md[:32] + "\u2026", y=1.0)
            last = z.groupby("subsample").tail(1)
            zone = max(last["zone"], key=order.get) if len(last) else "green"
            y, rd = int(z["yellow"].iloc[-1]), int(z["red"].iloc[-1])
            n_last = int(z["observations"].iloc[-1])
            ax.text(0.01, 0.96, f"p = {levels[md]:g}: yellow \u2265 {y}, red \u2265 {rd}\n"
                    + (f"n = {n_last}; " if n_last < window else "") + f"zone now: {zone}",
                    transform=ax.transAxes, va="top", fontsize=8,
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 1})
            ax.grid(alpha=0.25)
            _dates(ax)
            if k % ncol == 0:
                ax.set_ylabel(f"breaches, last {window} obs." if mpor == 1 else
                              f"per sub-sample, last {window}")
        for k in range(len(models), nrow * ncol):
            axes[k // ncol][k % ncol].axis("off")
        fixed_layout(fig, left=0.7, top=0.3, bottom=0.35, hspace=0.35, wspace=0.25)
        return fig


def parameter_stability(est: pd.DataFrame, params: Sequence[str], title: str):
    """One panel per parameter over the fit dates, one line per asset; failed and boundary fits marked."""
    with plotting() as plt:
        ncol = min(3, len(params))
        nrow = int(np.ceil(len(params) / ncol))
        fig, axes = plt.subplots(nrow, ncol, figsize=(WIDTH, 2.4 * nrow + 0.7), squeeze=False)
        assets = list(dict.fromkeys(est["asset"]))
        for k, name in enumerate(params):
            ax = axes[k // ncol][k % ncol]
            for j, asset in enumerate(assets):
                # one fit per date: the longest window (books with shorter histories fit shorter windows)
                r = est[est["asset"] == asset].sort_values(["date", "window_rows"]).drop_duplicates("date", keep="last")
                ax.plot(_x(r["date"]), r[name], lw=0.9, color=colour(j), label=asset)
                if "status" in r:
                    edge = r[r["status"] == "boundary"]
                    ax.scatter(_x(edge["date"]), edge[name], s=2, color="0.35", alpha=0.35, lw=0, zorder=3)
                    failed = r[r["status"] == "failed"]
                    ax.scatter(_x(failed["date"]), failed[name], s=22, marker="x", color="#c00000", zorder=4)
            ax.set_title(name)
            ax.grid(alpha=0.25)
            _dates(ax)
        for k in range(len(params), nrow * ncol):
            axes[k // ncol][k % ncol].axis("off")
        handles = [plt.Line2D([], [], color=colour(j), label=a) for j, a in enumerate(assets)]
        handles.append(plt.Line2D([], [], marker="o", ls="", color="0.35", markersize=3,
                                  label="fit on the stationarity boundary"))
        handles.append(plt.Line2D([], [], marker="x", ls="", color="#c00000", label="failed fit (previous kept)"))
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / (2.4 * nrow + 0.7)))
        fig.legend(handles=handles, loc="upper center", ncol=len(handles), frameon=False)
        return fig


def bars(frame: pd.DataFrame, value: str, label: str, percent_axis: bool = False):
    """Horizontal bars of ``value`` per row label (index), e.g. a measure per model."""
    with plotting() as plt:
        fig, ax = plt.subplots(figsize=(WIDTH * 0.7, 0.32 * len(frame) + 1.0))
        ax.barh([str(i) for i in frame.index], frame[value].to_numpy(float), color=colour(0))
        ax.invert_yaxis()
        ax.set_xlabel(label)
        values = frame[value].to_numpy(float)
        if percent_axis and np.isfinite(values).any() and np.nanmin(values) >= 0:
            # a share or ratio from zero; all zero: the axis is 0..100%, not matplotlib's -4%..4% around nothing
            top = float(np.nanmax(values))
            ax.set_xlim(0, top * 1.08 if top > 0 else 1.0)
        if percent_axis:
            _pct_axis(ax, "x")
        ax.grid(alpha=0.3, axis="x")
        fig.tight_layout()
        return fig


def heatmap(table: pd.DataFrame, title: str, fmt) -> object:
    """A 2-D grid of values (rows x columns) as a heatmap with each value written in its cell."""
    with plotting() as plt:
        fig, ax = plt.subplots(figsize=(min(WIDTH, 1.2 * table.shape[1] + 2.5), 0.5 * table.shape[0] + 1.3))
        values = table.to_numpy(float)
        ax.imshow(values, cmap="RdYlGn_r", aspect="auto")
        ax.set_xticks(range(table.shape[1]), [str(c) for c in table.columns])
        ax.set_yticks(range(table.shape[0]), [str(i) for i in table.index])
        ax.set_xlabel(str(table.columns.name or ""))
        ax.set_ylabel(str(table.index.name or ""))
        for i in range(table.shape[0]):
            for j in range(table.shape[1]):
                ax.text(j, i, fmt(values[i, j]), ha="center", va="center", fontsize=9)
        ax.set_title(title)
        fig.tight_layout()
        return fig
