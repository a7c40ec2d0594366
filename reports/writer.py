"""Write a study's report: self-contained HTML (plots embedded), ``results.json`` and CSV.

The report is one folder, written by :func:`marginlab.datasets.folders.publish_folder`:
only into a folder that does not exist, is empty, or is a previous marginlab
report (recognised by its ``.marginlab-report`` manifest, which lists the study,
the marginlab version and the sha256 of every file), and atomically (the new
folder is written into a temporary sibling and swapped in one system call).
The page is built from the section registry (:mod:`marginlab.reports.sections`):
``results.json`` holds every section's content (tables with units), the HTML renders
the same content. User text (study, portfolio and model names, descriptions, file
names) is escaped on the page and drawn as plain text in the plots (matplotlib's
``$...$`` math parsing is off).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from marginlab.datasets.conventions import date_format
from marginlab.datasets.folders import FolderKind, check_output_folder, publish_folder

from .formatting import esc
from .page import page_html
from .provenance import run_metadata
from .sections import Page, ReportData, build_sections

__all__ = ["REPORT_FOLDER", "REPORT_FILES", "RESULTS_FORMAT", "SCHEMA_PATH", "UNITS", "write_report", "render_html",
           "report_files", "results_dict", "check_report_folder", "read_results", "cell_problem"]

#: A report folder: recognised by its manifest ``.marginlab-report``, whose first line is the signature.
REPORT_FOLDER = FolderKind(what="marginlab report", manifest=".marginlab-report", header="# marginlab report\n",
                           signature=(".marginlab-report", b"# marginlab report\n"))


def _json_default(obj):
    if isinstance(obj, np.integer | np.bool_):
        return obj.item()
    if isinstance(obj, np.floating):
        return None if not math.isfinite(obj) else float(obj)
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    return str(obj)


def _clean(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


#: Units of the numbers in ``results.json`` (every table column also names its unit).
UNITS = {"quote ccy": "amount in the quote currency (USD or USDT)", "fraction": "a fraction (0.01 = 1%)",
         "fraction points": "a difference of two fractions (0.01 = 1 percentage point), not a relative change",
         "pvalue": "a p-value in [0, 1]", "count": "a whole number", "ratio": "a dimensionless number",
         "seconds": "seconds", "days": "observations (days on daily data)",
         "probability": "a tail probability (0.01 for a 99% level)"}
#: Version of the layout of ``results.json`` (:data:`SCHEMA_PATH` describes it).
RESULTS_FORMAT = "marginlab-results/1"
#: The JSON schema ``results.json`` follows.
SCHEMA_PATH = Path(__file__).with_name("results.schema.json")


def _sections(study) -> tuple[ReportData, list]:
    data = ReportData(study)
    return data, build_sections(data)


def results_dict(study, built=None) -> dict:
    """Everything the HTML report shows, as JSON-ready data with units (``results.json``).

    Every key but ``run`` (:func:`~marginlab.reports.provenance.run_metadata`: when the run started, how long
    it took, the command) is the same for two runs of a study with the same seed.
    """
    if built is None:
        _, built = _sections(study)
    cfg = study.config
    return _clean({"format": RESULTS_FORMAT, "study": cfg.to_dict(), "units": UNITS,
                   "sections": [{"key": s.key, "title": s.title, "content": content} for s, content in built],
                   "run": run_metadata(study)})


def render_html(study, built=None, data: ReportData | None = None, executor=None) -> str:
    """The self-contained HTML report of a :class:`~marginlab.validation.study.StudyResult`.

    Sections come from the registry (:data:`marginlab.reports.sections.SECTIONS`); each renders only when
    the result carries its data. The page has no script and loads nothing: figures are embedded PNG, drawn
    on ``executor`` when given (an executor of :mod:`marginlab.validation.executors` on this machine: the
    same bytes as drawn here, in a fraction of the time; see :class:`~marginlab.reports.sections.Page`).
    """
    if built is None:
        data, built = _sections(study)
    page = Page(data, executor)
    cfg = study.config
    toc, body = [], []
    for section, content in built:
        toc.append((section.key, section.title))
        body.append(f'<section id="{esc(section.key)}"><h2>{esc(section.title)}</h2>'
                    f"{section.render(content, page)}</section>")
    dates = study.backtest.frame["date"]
    when = date_format(cfg.freq)  # hours on hourly data: a last date 2021-05-10 is its 00:00 row, not the day
    span = f"{dates.min().strftime(when)} .. {dates.max().strftime(when)}" if len(dates) else "none"
    header = (f"<h1>marginlab study: {esc(cfg.name)}</h1>"
              + (f"<p>{esc(cfg.description)}</p>" if cfg.description else "")
              + f'<p class="meta">Assets {esc(", ".join(cfg.assets))}; {esc(cfg.freq)} data, margin dates {esc(span)}; '
              f"MPOR {cfg.mpor_days} observation(s); study p = {cfg.tail_prob:g}; seed {cfg.seed} (when and how long: "
              '<a href="#run-metadata">run metadata</a>). '
              f"Machine-readable: results.json (schema results.schema.json), {esc(', '.join(_table_names(study)))}."
              "</p>"
              + (f'<p class="note">{esc(left_out)}</p>' if (left_out := cfg.left_out_text()) else ""))
    return page.finish(page_html(f"marginlab study: {cfg.name}", header, toc, "\n".join(body)))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("marginlab")
    except PackageNotFoundError:  # pragma: no cover - running from an uninstalled checkout
        return "unknown"


#: The files of every report folder (besides the manifest ``.marginlab-report``).
REPORT_FILES = ("report.html", "results.json", "results.schema.json", "backtest.csv", "coverage.csv", "metrics.csv")
#: Tables written as CSV when the study result carries them: file name -> ``StudyResult`` attribute.
OPTIONAL_TABLES = {"procyclicality.csv": "procyclicality", "apc_tradeoff.csv": "apc", "stress_coverage.csv": "stress",
                   "cover.csv": "cover", "reverse_stress.csv": "reverse", "sweep.csv": "sweep"}


def report_files(study, executor=None) -> dict[str, bytes]:
    """The report's files (name -> content): :data:`REPORT_FILES`.

    ``report.html`` (the page), ``results.json`` (everything the page shows, with units; it follows
    ``results.schema.json``, shipped beside it), ``backtest.csv`` (every result row: the data of the
    figures), ``coverage.csv`` and ``metrics.csv``; and the tables of :data:`OPTIONAL_TABLES` the result
    carries (procyclicality, APC trade-off, stress coverage, Cover-1/2, reverse stress, sweep), and
    ``accounts.csv`` (per member account and model) when the run has member accounts. ``executor``: where
    the page's figures are drawn (:func:`render_html`).
    """
    data, built = _sections(study)
    results = results_dict(study, built)
    if executor is None:
        page, tables = render_html(study, built, data), _tables(study)
    else:  # the tables are written in a thread while the executor's workers draw the figures
        # (the page is waited for here: an interrupt stops the wait and the executor cancels its tasks)
        with ThreadPoolExecutor(1, thread_name_prefix="marginlab-report") as pool:
            writing = pool.submit(_tables, study)
            page = render_html(study, built, data, executor)
            tables = writing.result()
    return {"report.html": page.encode("utf-8"), **_json_files(results), **tables}


def _json_files(results: dict) -> dict[str, bytes]:
    return {
        "results.json": json.dumps(results, indent=1, default=_json_default, allow_nan=False).encode("utf-8"),
        "results.schema.json": SCHEMA_PATH.read_bytes()}


def _table_writers(study) -> dict[str, Callable[[], bytes]]:
    """The CSV files of ``study``'s report, in the order written: name -> its bytes when called.

    One list for the files written (:func:`_tables`) and the files the page's header names (:func:`_table_names`).
    """
    bt = study.backtest
    writers: dict[str, Callable[[], bytes]] = {
        "backtest.csv": lambda: bt.frame.to_csv(index=False).encode("utf-8"),
        "coverage.csv": lambda: study.coverage.to_csv().encode("utf-8"),
        "metrics.csv": lambda: study.metrics.to_csv().encode("utf-8")}
    for name, attribute in OPTIONAL_TABLES.items():
        if (table := getattr(study, attribute, None)) is not None and len(table):
            writers[name] = partial(_csv, table)
    if bt.accounts:  # member accounts: each account's coverage test (the report shows the account-level summary)
        writers["accounts.csv"] = lambda: _csv(bt.account_breach_rates(study.config.tail_prob))
    return writers


def _tables(study) -> dict[str, bytes]:
    return {name: write() for name, write in _table_writers(study).items()}


def _table_names(study) -> list[str]:
    """The CSV files :func:`_tables` writes for ``study``, in its order (the page's header lists them)."""
    return list(_table_writers(study))


def _csv(table: pd.DataFrame) -> bytes:
    keep_index = not isinstance(table.index, pd.RangeIndex)
    return table.to_csv(index=keep_index).encode("utf-8")


def check_report_folder(out: str | Path, warn_leftovers: bool = True) -> Path:
    """Check that a report may be written to ``out`` (see module docstring); return its resolved path.

    Raises ValueError naming the folder otherwise (``warn_leftovers``: see :func:`check_output_folder`).
    """
    return check_output_folder(out, REPORT_FOLDER, warn_leftovers)


def write_report(study, out: str | Path, executor=None) -> Path:
    """Write the report folder ``out`` atomically; return the path of ``report.html``.

    ``out`` must not exist, be empty, or be a previous marginlab report whose files
    are unchanged (see module docstring); anything else raises ValueError naming it.
    ``executor`` (optional, on this machine): where the figures are drawn (:func:`render_html`).
    """
    check_report_folder(out)
    files = report_files(study, executor)
    real = publish_folder(out, files, REPORT_FOLDER,
                          comments=[f"study: {json.dumps(study.config.name)}", f"marginlab {_version()}"])
    return real / "report.html"


_JSON_TYPES = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,), "object": (dict,),
               "array": (list,), "null": (type(None),)}


def cell_problem(cells: list) -> str | None:
    """What is wrong with the first bad verdict-matrix cell of ``cells`` by the schema's ``cell`` definition.

    ``"cells[i] ..."`` naming the cell and the problem; None when every cell is right. Checks what
    :data:`SCHEMA_PATH` says of a cell (required keys, conditionally required ones, enums, types, bounds) without
    needing ``jsonschema`` at run time, so ``marginlab show`` names the bad value and the allowed ones instead of
    failing further on. The schema is read once for all the cells.
    """
    spec = json.loads(SCHEMA_PATH.read_text())["$defs"]["cell"]
    for i, cell in enumerate(cells):
        problem = _cell_problem(cell, spec)
        if problem is not None:
            return f"cells[{i}] {problem}"
    return None


def _cell_problem(cell: object, spec: dict) -> str | None:
    """What is wrong with one cell by the schema's cell definition ``spec`` (None: nothing)."""
    if not isinstance(cell, dict):
        return f"is {type(cell).__name__}, not an object"
    required = list(spec["required"])
    condition = spec.get("if", {}).get("properties", {}).get("verdict", {}).get("enum", ())
    if cell.get("verdict") in condition:
        required += spec["then"]["required"]
    for key in required:
        if key not in cell:
            return f"has no key {key!r}"
    for key, rule in spec["properties"].items():
        if key not in cell:
            continue
        value = cell[key]
        if "enum" in rule and value not in rule["enum"]:
            return f"{key} {value!r} is not one of " + ", ".join(repr(v) for v in rule["enum"])
        types = rule.get("type")
        if types is not None:
            types = [types] if isinstance(types, str) else types
            allowed = tuple(t for name in types for t in _JSON_TYPES[name])
            if isinstance(value, bool) and "boolean" not in types or not isinstance(value, allowed):
                return f"{key} {value!r} is not of type {' or '.join(types)}"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if "minimum" in rule and value < rule["minimum"] or "maximum" in rule and value > rule["maximum"]:
                return (f"{key} {value!r} is outside [{rule.get('minimum', '-inf')}, "
                        f"{rule.get('maximum', 'inf')}]")
    return None


def read_results(folder: str | Path) -> dict:
    """The ``results.json`` of a report folder written by marginlab (ValueError naming the folder otherwise)."""
    folder = Path(folder)
    path = folder / "results.json"
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder; give the folder of a marginlab report")
    if not path.is_file():
        raise ValueError(f"{folder}: has no results.json; is it a marginlab report folder (marginlab run --out)?")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot be read as JSON ({exc})") from None
    found = results.get("format") if isinstance(results, dict) else None
    if found != RESULTS_FORMAT:
        raise ValueError(f"{path}: not a {RESULTS_FORMAT} file (format {found!r})")
    return results
