"""Write a study's report: self-contained HTML (plots embedded), JSON and CSV.

The report is one folder, written by :func:`marginlab.datasets.folders.publish_folder`:
only into a folder that does not exist, is empty, or is a previous marginlab
report (recognised by its ``.marginlab-report`` manifest, which lists the study,
the marginlab version and the sha256 of every file), and atomically (the new
folder is written into a temporary sibling and swapped in one system call).
User text (study, portfolio and model names) reaches the plots as plain text:
matplotlib's ``$...$`` math parsing is switched off.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from marginlab.datasets.folders import FolderKind, check_output_folder, publish_folder
from marginlab.validation.metrics import METRICS

__all__ = ["REPORT_FOLDER", "write_report", "render_html", "report_files", "check_report_folder"]

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


def _figure_png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(study) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # names come from the user (study file): plain text, never mathtext
    with matplotlib.rc_context({"text.parse_math": False}):
        return _draw(study, plt)


def _draw(study, plt) -> list[tuple[str, str]]:
    frame = study.backtest.frame
    accounts = set(study.backtest.accounts)
    out = []
    if accounts:  # member accounts: one histogram of per-account breach rates, not a plot per account
        out.append(_account_histogram(study, plt))
        frame = frame[~frame["portfolio"].isin(accounts)]
    for portfolio, rows in frame.groupby("portfolio", sort=False):
        fig, ax = plt.subplots(figsize=(10, 3.2))
        first = True
        for model, r in rows.groupby("model", sort=False):
            if first:
                ax.plot(r["date"], r["loss"].clip(lower=0), color="0.6", lw=0.6, label="realised loss (MPOR)")
                first = False
            ax.plot(r["date"], r["margin"], lw=1.0, label=f"margin: {model}")
            b = r[r["breach"]]
            ax.scatter(b["date"], b["loss"], s=8, zorder=3)
        ax.set_title(portfolio, fontsize=10)
        ax.set_ylabel("quote currency")
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
        out.append((portfolio, _figure_png(fig)))
        plt.close(fig)
    cov = study.coverage.reset_index()
    if cov.empty:
        return out
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(cov) + 1.5))
    labels = [f"{p} | {m}" for p, m in zip(cov["portfolio"], cov["model"], strict=True)]
    ax.barh(labels, cov["breach_rate"], color=["#c0392b" if z == "red" else "#e1a100" if z == "yellow"
                                              else "#2e8b57" for z in cov["traffic_light_zone"]])
    ax.axvline(study.config.tail_prob, color="k", ls="--", lw=1, label=f"target {study.config.tail_prob:.2%}")
    ax.set_xlabel("breach rate (colour: Basel zone of the last 250 observations)")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=8)
    out.insert(0, ("Breach rate per portfolio and model", _figure_png(fig)))
    plt.close(fig)
    return out


def _account_histogram(study, plt) -> tuple[str, str]:
    """Histogram of the per-account breach rates, one series per model, with each model's target rate."""
    per = study.backtest.account_breach_rates(study.config.tail_prob).reset_index()
    fig, ax = plt.subplots(figsize=(10, 3.2))
    top = max(float(per["breach_rate"].max()), 0.02)
    bins = np.linspace(0.0, top, 31)
    for model, r in per.groupby("model", sort=False):
        ax.hist(r["breach_rate"], bins=bins, histtype="step", lw=1.2, label=model)
    ax.axvline(study.config.tail_prob, color="k", ls="--", lw=1, label=f"p = {study.config.tail_prob:g}")
    ax.set_xlabel("breach rate of the account (breaches / account-days)")
    ax.set_ylabel("accounts")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    title = f"Per-account breach rates ({per['account'].nunique()} member accounts)"
    png = _figure_png(fig)
    plt.close(fig)
    return title, png


def _accounts_section(study) -> str:
    """The account-level back-test (CPMI-IOSCO PQD 6.5 style), when the study has member accounts."""
    bt = study.backtest
    if not bt.accounts:
        return ""
    p = study.config.tail_prob
    return f"""<h2>Member accounts</h2>
<p>{len(bt.accounts)} accounts from <code>{html.escape(str(study.config.accounts_file))}</code>. Each account is
back-tested on the dates it holds a book; pooled over account-days, by account, and the accounts with the largest
shortfall (loss - margin on a breach). Per-account coverage tests in <code>accounts.csv</code> (one-sided exact
binomial p-value of too many breaches: with many accounts some fall below any threshold by chance).</p>
{_table(bt.accounts_summary(p))}
<h3>Distribution of per-account breach rates</h3>
{_table(bt.account_breach_distribution(p))}
<h3>Worst accounts (largest shortfall, per model)</h3>
{_table(bt.worst_accounts(10, default_p=p))}
"""


def _table(frame: pd.DataFrame, floatfmt: str = "{:,.4g}") -> str:
    return frame.to_html(classes="t", float_format=floatfmt.format, na_rep="", border=0, escape=True)


def render_html(study) -> str:
    """The self-contained HTML report of a :class:`~marginlab.validation.study.StudyResult`."""
    cfg = study.config
    plots = "".join(f'<h3>{html.escape(title)}</h3><img alt="{html.escape(title)}" '
                    f'src="data:image/png;base64,{png}"/>' for title, png in _plots(study))
    units = {m.key: f"{m.title} [{m.unit}]" for m in METRICS}
    metrics = study.metrics.rename(columns=units)
    models = "".join(f"<li><b>{html.escape(k)}</b>: <code>{html.escape(v.describe())}</code></li>"
                     for k, v in study.backtest.models.items())
    na = ", ".join(f"{p} / {m}" for p, m in study.backtest.not_applicable) or "none"
    skipped = study.files.get("skipped_portfolios") or "none"
    bt = study.backtest
    diag = "".join(f"<li><b>{html.escape(m)}</b>: " + ", ".join(f"{html.escape(str(k))} {v}" for k, v in d.items())
                   + "</li>" for m, d in bt.diagnostics.items()) or "<li>no estimated model</li>"
    warm = "".join(f"<li>{html.escape(pf)} / {html.escape(md)}: {n} dates</li>"
                   for (pf, md), n in bt.warmup.items()) or "<li>none</li>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>marginlab study: {html.escape(cfg.name)}</title>
<style>
body {{ font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2em; max-width: 1200px; }}
table.t {{ border-collapse: collapse; font-size: 12px; margin-bottom: 1.5em; }}
table.t td, table.t th {{ border: 1px solid #ccc; padding: 3px 6px; text-align: right; }}
table.t th {{ background: #f2f2f2; }}
img {{ max-width: 100%; }}
code {{ font-size: 12px; }}
</style></head><body>
<h1>marginlab study: {html.escape(cfg.name)}</h1>
<p>{html.escape(cfg.description)}</p>
<p>Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Assets {", ".join(cfg.assets)}; frequency {cfg.freq};
MPOR {cfg.mpor_days} observation(s); tail probability p = {cfg.tail_prob:g} (target coverage
{1 - cfg.tail_prob:.2%}); seed {cfg.seed}. Breach = realised loss over the MPOR &gt; margin (strict).
Margins use data up to the margin date only.</p>
<h2>Models</h2><ul>{models}</ul>
<p>Not applicable (model does not cover the book's instruments): {html.escape(na)}.
Portfolios skipped (assets not in the study): {html.escape(skipped)}.</p>
<h2>Estimation diagnostics</h2>
<p>Filter fits per model over the whole replay: total fits, optimisations that failed (previous parameters
kept), fits on the stationarity boundary (alpha + gamma/2 + beta = 1) and fits reusing parameters between
refits.</p><ul>{diag}</ul>
<p>Warm-up (dates without a margin because the model's history was shorter than its minimum):</p><ul>{warm}</ul>
{_accounts_section(study)}
<h2>Coverage</h2>
<p>Exact finite-sample p-values of the Kupiec POF and Christoffersen conditional-coverage tests
(Bonferroni over non-overlapping sub-samples when MPOR &gt; 1); Basel traffic-light zone of the last
250 observations and the worst zone of any rolling 250-observation window. A p-value printed as 0 is below
the smallest double (1e-308).</p>
{_table(study.coverage)}
<h2>Capital efficiency and procyclicality</h2>
{_table(metrics)}
<h2>Plots</h2>
{plots}
<h2>Data</h2>
<p>Bundled real market data; sources and licences in <code>datasets/NOTICE.md</code>, build actions in
<code>datasets/data/BUILD_LOG.md</code>. Machine-readable results: <code>report.json</code>,
<code>backtest.csv</code>, <code>coverage.csv</code>, <code>metrics.csv</code>.</p>
</body></html>
"""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("marginlab")
    except PackageNotFoundError:  # pragma: no cover - running from an uninstalled checkout
        return "unknown"


def report_files(study) -> dict[str, bytes]:
    """The report's files (name -> content): ``report.html``, ``report.json`` and three CSV tables."""
    payload = {"config": study.config.to_dict(), "backtest": study.backtest.to_dict(),
               "coverage": study.coverage.reset_index().to_dict(orient="records"),
               "summary": study.backtest.breaches().reset_index().to_dict(orient="records")}
    if study.backtest.accounts:  # the account view at the study's tail probability for rule-based models
        payload["backtest"]["accounts"] = study.backtest.accounts_dict(study.config.tail_prob)
    files = {
        "report.html": render_html(study).encode("utf-8"),
        "report.json": json.dumps(_clean(payload), indent=1, default=_json_default).encode("utf-8"),
        "backtest.csv": study.backtest.frame.to_csv(index=False).encode("utf-8"),
        "coverage.csv": study.coverage.to_csv().encode("utf-8"),
        "metrics.csv": study.metrics.to_csv().encode("utf-8"),
    }
    if study.backtest.accounts:
        files["accounts.csv"] = study.backtest.account_breach_rates(study.config.tail_prob).to_csv().encode("utf-8")
    return files


def check_report_folder(out: str | Path) -> Path:
    """Check that a report may be written to ``out`` (see module docstring); return its resolved path.

    Raises ValueError naming the folder otherwise.
    """
    return check_output_folder(out, REPORT_FOLDER)


def write_report(study, out: str | Path) -> Path:
    """Write the report folder ``out`` atomically; return the path of ``report.html``.

    ``out`` must not exist, be empty, or be a previous marginlab report whose files
    are unchanged (see module docstring); anything else raises ValueError naming it.
    """
    check_report_folder(out)
    files = report_files(study)
    real = publish_folder(out, files, REPORT_FOLDER,
                          comments=[f"study: {json.dumps(study.config.name)}", f"marginlab {_version()}"])
    return real / "report.html"
