"""Parameter sweeps: a study run over a grid of model parameters, as independent tasks.

``marginlab sweep STUDY.toml --grid GRID.toml --out DIR`` (or :func:`run_sweep`)
takes the market, books and settings of a study and replaces its models by the
grid's. A grid file has ``[[models]]`` entries as a study (``name``, optional
``label``, ``params``, ``overlays``); a parameter given as a **list** is swept,
and the grid points of an entry are the cartesian product of its swept
parameters (overlay parameters included)::

    [[models]]
    name = "fhs_garch"
    params = { lookback = [250, 500, 1000], dist = ["normal", "t"] }    # 6 points

    [[models]]
    name = "historical_var"
    overlays = [{ name = "apc_buffer", params = { buffer = [0.25, 0.5] } }]   # 2 points

(A parameter whose value is itself a list, such as a bracket table, is swept
over the elements of the outer list: give ``[[...]]`` for one value.)

Every grid point is one task — a backtest of its model on every book of the
study, with the study's seed — run through an executor (any object with
``map(function, items) -> list`` in order, :class:`~marginlab.validation.engine.Executor`;
serially in this process by default). Points share nothing, so the table is the
same on any executor and equals separate runs of the same points.

The result is a tidy table, one row per grid point x book (``grid_point``, the
entry's label as ``model``, ``portfolio``, the swept parameters as
``param:<name>`` or ``param:<overlay>.<name>``), with the coverage headline at
the model's own tail probability (observations, breaches, breach rate, exact
Kupiec, one-sided and Christoffersen p-values, traffic-light zone), the average
margin and margin per unit notional, and the procyclicality measures of
:data:`~marginlab.validation.metrics.PROCYCLICALITY`. The sweep's folder holds
``sweep.csv``, ``sweep.json`` (study, grid and table) and ``sweep.html`` with a
heatmap per entry and measure (books x grid points), written like a report (only
into a new, empty or previous sweep folder, atomically). The table has the shape
of ``StudyResult.sweep``, which the study report draws (Parameter sensitivity).

Before any point runs, each point's model is checked against the books
(``applies_to``, :meth:`Backtest.applies`): a point applying to none is a
ValueError naming it and the books; a book a point does not apply to has no rows
(``SweepResult.not_applicable``, named in :meth:`SweepResult.summary`).

The sweep runs the study's reference portfolios (``[portfolios]``) with its
market, MPOR, seed, tail probability, date range and ``include_funding``; a
study with ``[accounts]`` is refused (ValueError), and ``standalone_legs``,
``[stress]`` and ``[execution]`` (the executor is ``run_sweep``'s argument, the
CLI's flags) are not used: a UserWarning names those present.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from marginlab.datasets import MarketData, load_market
from marginlab.datasets.folders import FolderKind, check_output_folder, publish_folder
from marginlab.models import MODELS

from .engine import Backtest, Executor
from .study import MODEL_KEYS, StudyConfig, _overlays, _table, build_model, check_study_range, load_study, read_toml

__all__ = ["GridPoint", "SweepResult", "SWEEP_FOLDER", "HEATMAP_MEASURES", "parse_grid", "load_grid", "run_sweep",
           "sweep_point"]

#: A sweep folder: recognised by its manifest ``.marginlab-sweep``.
SWEEP_FOLDER = FolderKind(what="marginlab sweep", manifest=".marginlab-sweep", header="# marginlab sweep\n",
                          signature=(".marginlab-sweep", b"# marginlab sweep\n"))

#: Columns of the table drawn as heatmaps (books x grid points), with their titles.
HEATMAP_MEASURES: dict[str, str] = {"breach_rate": "breach rate", "kupiec_pvalue": "Kupiec p-value (exact)",
                                    "mean_margin_rate": "average margin / notional",
                                    "max_5d_increase": "largest 5-day margin-rate increase"}


@dataclass(frozen=True)
class GridPoint:
    """One point of a grid: a model (with overlays) and the values its swept parameters take there.

    Attributes
    ----------
    entry : int
        Index of the grid's ``[[models]]`` entry.
    model : str
        The entry's label (its ``label``, else the model's name; made unique across entries).
    label : str
        The entry's label followed by the swept values, e.g. ``"fhs_garch [lookback=250, dist='t']"``.
    name, params, overlays
        The model as :func:`~marginlab.validation.study.build_model` takes it.
    swept : dict
        Swept parameter -> value (overlay parameters as ``"overlay.parameter"``).
    """

    entry: int
    model: str
    label: str
    name: str
    params: dict[str, Any]
    overlays: tuple[tuple[str, dict[str, Any]], ...] = ()
    swept: dict[str, Any] = field(default_factory=dict)


def _axes(params: dict[str, Any], prefix: str = "") -> list[tuple[str, list]]:
    return [(prefix + key, value) for key, value in params.items() if isinstance(value, list)]


def parse_grid(raw: dict[str, Any], source: str = "<dict>") -> list[GridPoint]:
    """The grid points of a parsed grid file (``[[models]]`` entries; lists are swept). ValueError names the key."""
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: a grid must be a table with [[models]] entries")
    unknown = sorted(set(raw) - {"models"})
    if unknown:
        raise ValueError(f"{source}: unknown section(s) {unknown} in a grid file; it holds [[models]] entries only")
    entries = raw.get("models")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{source}: at least one [[models]] entry is required")
    points, labels, bases = [], set(), set()
    for k, entry in enumerate(entries):
        where = f"{source}: models[{k}]"
        entry = _table(entry, MODEL_KEYS, source, f"models[{k}]")
        name = entry.get("name")
        if name not in MODELS:
            raise ValueError(f"{where}: unknown model {name!r}; registered models: {sorted(MODELS)}")
        params = entry.get("params", {})
        chain = _overlays(entry.get("overlays", []), source, f"models[{k}]")
        axes = _axes(params) + [ax for o, (oname, oparams) in enumerate(chain) for ax in _axes(oparams, f"{oname}.")]
        for key, values in axes:
            if not values:
                raise ValueError(f"{where}: {key} is an empty list (nothing to sweep)")
        base = entry.get("label", name)
        base = base if base not in bases else f"{base} ({k})"
        bases.add(base)
        for combo in itertools.product(*(values for _, values in axes)) if axes else [()]:
            swept = dict(zip([key for key, _ in axes], combo, strict=True))
            p = {key: swept.get(key, value) for key, value in params.items()}
            ch = tuple((oname, {key: swept.get(f"{oname}.{key}", value) for key, value in oparams.items()})
                       for oname, oparams in chain)
            label = base if not swept else f"{base} [{', '.join(f'{key}={v!r}' for key, v in swept.items())}]"
            try:
                build_model(name, p, ch)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{where} ({name}) at {swept or 'its only point'}: {exc}") from None
            if label in labels:
                raise ValueError(f"{where}: grid point label {label!r} appears twice; give the entries distinct labels")
            labels.add(label)
            points.append(GridPoint(entry=k, model=base, label=label, name=name, params=p, overlays=ch,
                                    swept=swept))
    return points


def load_grid(path: str | Path) -> list[GridPoint]:
    """Read a grid TOML file (UTF-8) and return its points; errors name the file and key."""
    return parse_grid(read_toml(path, "grid"), source=str(path))


@dataclass
class _Runner:
    """Runs one grid point on the study's market and books (a picklable callable for executors)."""

    config: StudyConfig
    market: MarketData
    books: dict

    def __call__(self, point: GridPoint) -> pd.DataFrame:
        return sweep_point(point, self.config, self.market, self.books)


def sweep_point(point: GridPoint, config: StudyConfig, market: MarketData, books: dict) -> pd.DataFrame:
    """The table rows of one grid point: its model backtested on ``books`` with the study's settings."""
    model = build_model(point.name, point.params, point.overlays)
    result = Backtest(market, books, {point.label: model}, mpor_days=config.mpor_days, start=config.start,
                      end=config.end, include_funding=config.include_funding, seed=config.seed).run()
    columns = ["observations", "breaches", "breach_rate", "p", "kupiec_pvalue", "kupiec_direction",
               "too_many_pvalue", "christoffersen_cc_pvalue", "traffic_light_zone"]
    if result.frame.empty:
        return pd.DataFrame()
    coverage = result.coverage(default_p=config.tail_prob)[columns]
    pro = result.procyclicality().drop(columns="sample")
    mean = result.frame.groupby(["portfolio", "model"], sort=False)["margin"].mean().rename("mean_margin")
    table = coverage.join(mean).join(pro).reset_index()
    head = pd.DataFrame({"grid_point": point.label, "model": point.model,
                         **{f"param:{k}": [v] * len(table) for k, v in point.swept.items()}}, index=table.index)
    return pd.concat([head, table.drop(columns="model")], axis=1)


@dataclass
class SweepResult:
    """The sweep's table (one row per grid point x book), its points, settings and where it was written."""

    config: StudyConfig
    points: list[GridPoint]
    table: pd.DataFrame
    elapsed_s: float = 0.0
    path: Path | None = None
    #: (grid point label, book) pairs without rows: the model does not apply to the book (``applies_to``)
    not_applicable: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        """Median over books of the headline columns per grid point, and the points that skip books."""
        cols = ["breach_rate", "kupiec_pvalue", "mean_margin_rate", "max_5d_increase"]
        med = self.table.groupby("grid_point", sort=False)[cols].median()
        skipped = {}
        for label, book in self.not_applicable:
            skipped.setdefault(label, []).append(book)
        notes = "".join(f"\n{label} does not apply to (no rows): {', '.join(books)}"
                        for label, books in skipped.items())
        left_out = self.config.left_out_text()
        if left_out:
            notes += f"\n{left_out}"
        from marginlab.reports.formatting import frame_text

        units = {"breach_rate": "fraction", "kupiec_pvalue": "pvalue", "mean_margin_rate": "fraction",
                 "max_5d_increase": "fraction"}
        return (f"Sweep of {len(self.points)} grid point(s) on study {self.config.name!r} in "
                f"{self.elapsed_s:.1f}s; medians over books:\n{frame_text(med, units)}{notes}")

    def __str__(self) -> str:
        return self.summary()


def run_sweep(study: str | Path | StudyConfig, grid: str | Path | Sequence[GridPoint], out: str | Path | None = None,
              executor: Executor | None = None, write: bool = True) -> SweepResult:
    """Run every grid point on the study's market and books (see the module docstring).

    Parameters
    ----------
    study : path or StudyConfig
        Market, books, MPOR, seed, tail probability and date range (its models are not used).
    grid : path or list of GridPoint
        The grid file, or points from :func:`parse_grid`.
    out : path, optional
        Folder of ``sweep.csv``, ``sweep.json`` and ``sweep.html``; required when ``write``.
    executor : object with ``map(function, items) -> list``, optional
        Runs the grid points (serially in this process by default); the table is the same on any executor.
    write : bool
        Write the folder (checked before anything runs).
    """
    config = study if isinstance(study, StudyConfig) else load_study(study)
    points = list(grid) if not isinstance(grid, str | Path) else load_grid(grid)
    if not points:
        raise ValueError("run_sweep: the grid has no point")
    _check_settings(config)
    if write:
        if out is None:
            raise ValueError("run_sweep: give the output folder (--out DIR)")
        out = check_output_folder(out, SWEEP_FOLDER)
    t0 = time.perf_counter()
    market = load_market(list(config.assets), freq=config.freq, with_option_chains=config.smile)
    check_study_range(config, market)
    books, left_out = config.reference_books()
    if left_out:
        warnings.warn(config.left_out_text(), stacklevel=2)
    if not books:
        raise ValueError(f"{config.source}: no portfolio can be built from market.assets {list(config.assets)}")
    not_applicable = _applicability(config, market, books, points)
    runner = _Runner(config, market, books)
    pieces = [runner(p) for p in points] if executor is None else executor.map(runner, points)
    empty = [p.label for p, piece in zip(points, pieces, strict=True) if not len(piece)]
    if empty:  # every book of the point is inside the model's warm-up
        raise ValueError(f"{config.source}: grid point(s) {empty} give no margin on any book between "
                         f"{config.start or 'the start'} and {config.end or 'the end of the data'} (every date is "
                         "in the model's warm-up); widen market.start/end or shorten the lookback")
    table = pd.concat(pieces, ignore_index=True)
    params = [c for c in table.columns if c.startswith("param:")]  # swept parameters next to the point's name
    head = ["grid_point", "model", *params]
    table = table[head + [c for c in table.columns if c not in head]]
    result = SweepResult(config=config, points=points, table=table, elapsed_s=time.perf_counter() - t0,
                         not_applicable=not_applicable)
    if write:
        files = {"sweep.csv": table.to_csv(index=False).encode("utf-8"),
                 "sweep.json": json.dumps(_json(result), indent=1, default=str).encode("utf-8"),
                 "sweep.html": render_sweep_html(result).encode("utf-8")}
        result.path = publish_folder(out, files, SWEEP_FOLDER, comments=[f"study: {json.dumps(config.name)}"])
    return result


def _check_settings(config: StudyConfig) -> None:
    """Refuse member accounts (the sweep runs reference portfolios only); warn once of the settings it ignores."""
    if config.accounts_file is not None:
        raise ValueError(f"{config.source}: [accounts]: a sweep runs the study's reference portfolios only, not "
                         f"member accounts ({config.accounts_file}); remove [accounts] (keep [portfolios]) for the "
                         "sweep, or compare models on the accounts with marginlab run")
    ignored = [name for name, used in (
        ("study.standalone_legs", config.standalone_legs),
        ("[stress]", config.stress_scenarios is not None),
        ("[execution] (give --executor/--workers/--scheduler, or run_sweep(executor=...))",
         config.executor != "auto" or config.workers is not None or config.scheduler is not None
         or config.books_per_task is not None)) if used]
    if ignored:
        warnings.warn(f"{config.source}: a sweep does not use {', '.join(ignored)}: its table has coverage, "
                      "margin and procyclicality only", stacklevel=3)


def _applicability(config: StudyConfig, market: MarketData, books: dict, points: list[GridPoint]) -> list[tuple]:
    """(point label, book) pairs the point's model does not apply to; ValueError if a point applies to no book.

    Checked before any point runs (and so before anything is written): a point without a book would
    leave an empty table.
    """
    check = Backtest(market, books, {p.label: build_model(p.name, p.params, p.overlays) for p in points},
                     mpor_days=config.mpor_days, start=config.start, end=config.end)
    pairs = [(p.label, name) for p in points for name in books if not check.applies(p.label, name)]
    none = [f"{p.label!r} (model {p.name!r})" for p in points
            if sum(label == p.label for label, _ in pairs) == len(books)]
    if none:
        raise ValueError(f"{config.source}: grid point(s) {', '.join(none)} apply to none of the study's books "
                         f"({', '.join(books)}): the model does not margin their instruments; sweep it on books "
                         "it applies to (see marginlab models)")
    return pairs


def _json(result: SweepResult) -> dict:
    table = result.table.replace([np.inf, -np.inf], np.nan).astype(object)
    table = table.where(pd.notna(table), None)
    return {"study": result.config.to_dict(),
            "grid": [{"entry": p.entry, "model": p.model, "label": p.label, "name": p.name, "params": p.params,
                      "overlays": [{"name": o, "params": op} for o, op in p.overlays], "swept": p.swept}
                     for p in result.points],
            "table": table.to_dict(orient="records")}


def _heatmap_png(matrix: pd.DataFrame, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"text.parse_math": False}):
        fig, ax = plt.subplots(figsize=(1.2 + 0.9 * matrix.shape[1], 1.0 + 0.35 * matrix.shape[0]))
        values = matrix.to_numpy(float)
        image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap="viridis")
        ax.set_xticks(range(matrix.shape[1]), [str(c) for c in matrix.columns], rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(matrix.shape[0]), [str(r) for r in matrix.index], fontsize=7)
        for (r, c), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(c, r, f"{v:.3g}", ha="center", va="center", fontsize=6, color="w")
        ax.set_title(title, fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.03)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def render_sweep_html(result: SweepResult) -> str:
    """The sweep's self-contained HTML page: per grid entry and measure, a heatmap of books x grid points."""
    parts = []
    table = result.table
    names = {p.label: ", ".join(f"{k}={v!r}" for k, v in p.swept.items()) or p.label for p in result.points}
    for model, rows in (table.groupby("model", sort=False) if len(table) else []):
        rows = rows.assign(column=rows["grid_point"].map(names))
        parts.append(f"<h2>{html.escape(str(model))}</h2>")
        for measure, title in HEATMAP_MEASURES.items():
            if measure not in rows.columns:
                continue
            matrix = rows.pivot(index="portfolio", columns="column", values=measure)
            matrix = matrix.reindex(index=list(dict.fromkeys(rows["portfolio"])),
                                    columns=list(dict.fromkeys(rows["column"])))
            png = _heatmap_png(matrix, title)
            parts.append(f'<h3>{html.escape(title)}</h3><img alt="{html.escape(title)}" '
                         f'src="data:image/png;base64,{png}"/>')
    cfg = result.config
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>marginlab sweep: {html.escape(cfg.name)}</title>
<style>body {{ font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2em; max-width: 1400px; }}
img {{ max-width: 100%; }}</style></head><body>
<h1>marginlab sweep: {html.escape(cfg.name)}</h1>
<p>{len(result.points)} grid point(s) on the books of study {html.escape(cfg.name)} (assets
{html.escape(", ".join(cfg.assets))}; MPOR {cfg.mpor_days}; seed {cfg.seed}; rule-based models tested at
p = {cfg.tail_prob:g}, risk models at their own level). Each heatmap: books (rows) x grid points (columns).
The full table is <code>sweep.csv</code>.</p>
{''.join(parts)}
</body></html>
"""
