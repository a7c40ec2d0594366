"""The ``marginlab`` command line.

``marginlab datasets`` prints the catalogue of bundled datasets;
``marginlab datasets build --raw DIR`` rebuilds them from the raw files;
``marginlab run [STUDY.toml] [--out DIR] [--executor serial|local|remote] [--workers N] [--scheduler ADDRESS]``
runs a study (on this process, a local Dask cluster or a remote one:
:mod:`marginlab.validation.executors`), writes its report and prints the verdict
matrix (books x models) and the report's path; on a terminal it shows the stages
and a bar over the backtest's tasks (standard error);
``marginlab show REPORT_DIR`` prints the verdict matrix of a report written before;
``marginlab diff BEFORE AFTER`` says which margins moved between two runs and which
breaches flipped (:mod:`marginlab.validation.compare`);
``marginlab models`` lists the registered margin models (and overlays) with their
parameters, defaults and a one-line description;
``marginlab sweep STUDY.toml --grid GRID.toml --out DIR`` runs the study's books over a
grid of model parameters (:mod:`marginlab.validation.sweep`) and writes its table and
heatmaps; it takes the same executor flags.

Errors. Every error a user can cause (a bad study file, bad data, an output
folder marginlab may not write) ends in one line ``marginlab: error: ...``
naming the file, key or value, with exit code 2; Ctrl-C ends with one line and
exit code 130. A warning (a setting a command does not use, a folder left by an
interrupted run) is one line ``marginlab: warning: ...`` on standard error.
An error is the user's when it is a :class:`DataError`, an
``OSError`` (a file that cannot be read or written) or a ``ValueError`` raised
by marginlab's own code; anything else (an exception from a library, or of
another type) is a bug in marginlab and is shown with its traceback and a line
asking to report it (exit code 1).

Output folders. ``marginlab run --out DIR``, ``marginlab sweep --out DIR`` and
``marginlab datasets build --out DIR`` write only into a folder that does not exist, is empty, or is one
marginlab wrote before (recognised by its manifest), and replace it atomically;
see :mod:`marginlab.datasets.folders`. There is no option to override this.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import traceback
import warnings
from pathlib import Path

__all__ = ["main", "build_parser", "is_user_error"]


def _own_code() -> frozenset[Path]:
    """Folders holding marginlab's own modules: a ValueError raised there is a message written for the user."""
    import marginlab.datasets
    import marginlab.models
    import marginlab.reports
    import marginlab.validation

    return frozenset(Path(p.__file__).resolve().parent for p in (marginlab.datasets, marginlab.models,
                                                                  marginlab.reports, marginlab.validation))


def _datasets(args: argparse.Namespace) -> int:
    if args.action == "build":
        from marginlab.datasets.build import DATA_DIR, build

        if not args.raw:
            raise ValueError("datasets build: --raw DIR (the folder of raw files) is required")
        hashes = build(args.raw, args.out if args.out else DATA_DIR)
        for name, digest in sorted(hashes.items()):
            print(f"{digest}  {name}")
        return 0
    given = [flag for flag in ("raw", "out") if getattr(args, flag)]
    if given:  # 'datasets --raw DIR' (without 'build') used to list the catalogue and ignore the folder
        raise ValueError(f"datasets: --{given[0]} is for 'datasets build' (marginlab datasets build --raw DIR)")
    import pandas as pd
    from marginlab.datasets import catalog

    cat = catalog()[["name", "asset", "frequency", "first", "last", "rows", "source", "licence"]]
    with pd.option_context("display.width", 250, "display.max_colwidth", 60,
                           "display.max_rows", 200):
        print(cat.to_string(index=False))
    return 0


def _run(args: argparse.Namespace) -> int:
    from marginlab.validation.executors import executor_from_args
    from marginlab.validation.progress import Progress
    from marginlab.validation.study import run_study

    progress = Progress()
    result = run_study(args.study, out=args.out, progress=progress, **executor_from_args(args))
    progress.done("study finished")
    cfg = result.config
    print(f"Study {cfg.name!r}: MPOR {cfg.mpor_days} observation(s), seed {cfg.seed}; verdict per book and model "
          "(each model at its own level):\n")
    print(result.verdict_text())
    if result.backtest.accounts or result.backtest.idle_accounts or result.backtest.untestable_accounts:
        print(f"\n{result.accounts_text()}")
    if stress := result.stress_text():
        print(f"\n{textwrap.fill(stress, 110)}")
    if result.report_path is not None:
        print(f"\nreport written to {result.report_path}")
    return 0


def _show(args: argparse.Namespace) -> int:
    import pandas as pd
    from marginlab.reports import read_results, verdict_text
    from marginlab.reports.writer import cell_problem
    from marginlab.validation.study import StudyResult

    results = read_results(args.report)
    file = Path(args.report) / "results.json"

    def need(node, where: str, *keys):
        """``node[k1][k2]...``; a missing key is one line naming the file and the key's path."""
        for key in keys:
            found = key in node if isinstance(node, dict) else isinstance(node, list) and 0 <= key < len(node)
            where = f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}" if where else key
            if not found:
                raise ValueError(f"{file}: key {where} is missing (a results.json written by marginlab run has "
                                 "it; was the file edited or cut short?)")
            node = node[key]
        return node

    study, sections = need(results, "", "study"), need(results, "", "sections")
    name, source, mpor, seed = (need(study, "study", k) for k in ("name", "source", "mpor_days", "seed"))
    keys = [need(section, f"sections[{k}]", "key") for k, section in enumerate(sections)]
    if "verdict" not in keys:
        raise ValueError(f"{file}: has no verdict section (sections[*].key = 'verdict')")
    k = keys.index("verdict")
    verdict = need(sections[k], f"sections[{k}]", "content", "matrix")
    for key in ("books", "models", "cells", "rule"):
        need(verdict, f"sections[{k}].content.matrix", key)
    cells = need(verdict, f"sections[{k}].content.matrix", "cells")
    problem = cell_problem(cells if isinstance(cells, list) else [cells])
    if problem is not None:  # a missing key, or a value the schema's cell definition does not allow
        raise ValueError(f"{file}: the verdict matrix (sections[{k}].content.matrix): {problem}")
    try:
        text = verdict_text(verdict)
    except KeyError as exc:
        raise ValueError(f"{file}: the verdict matrix (sections[{k}].content.matrix) has a cell without key "
                         f"{exc.args[0]!r}") from None
    print(f"Study {name!r} ({source}): MPOR {mpor} observation(s), seed {seed}; run "
          f"{(results.get('run') or {}).get('started') or 'at an unknown time'}\n")
    print(text)
    if "accounts" in keys:
        k = keys.index("accounts")
        where = f"sections[{k}].content"
        accounts = need(sections[k], f"sections[{k}]", "content")
        if not (isinstance(accounts, dict) and accounts.get("tables")):
            print(f"\n{need(accounts, where, 'intro')}")
        else:
            rows, caption = need(accounts, where, "tables", 0, "table", "rows"), need(accounts, where, "tables", 0,
                                                                                     "caption")
            columns = need(accounts, where, "tables", 0, "table", "columns")
            from marginlab.reports.formatting import frame_text
            from marginlab.reports.sections import account_count_names

            units = {c.get("key"): c.get("unit") for c in columns if isinstance(c, dict)}  # as the page shows them
            # the row counts are named as observations on non-daily data, as the report wrote them
            renamed = account_count_names(need(study, "study", "freq"))
            wanted = [renamed.get(c, c) for c in StudyResult.ACCOUNT_COLUMNS]
            frame = pd.DataFrame(rows).reindex(columns=["model", *wanted]).set_index("model")
            print(f"\nMember accounts ({caption}):\n{frame_text(frame, units)}")
            if accounts.get("untested"):  # held account-days not tested, as marginlab run printed them
                print(accounts["untested"])
    if "stress" in keys:  # what the stress tests could not test, as marginlab run printed it
        note = sections[keys.index("stress")].get("content", {}).get("note")
        if note:
            print(f"\n{textwrap.fill(note, 110)}")
    return 0


def _fmt_default(value) -> str:
    import dataclasses

    if value is dataclasses.MISSING:
        return "required"
    return repr(value)


def _diff(args: argparse.Namespace) -> int:
    from marginlab.validation.compare import backtest_file, compare_backtests, read_backtest

    files = [backtest_file(f) for f in (args.before, args.after)]
    diff = compare_backtests(read_backtest(files[0]), read_backtest(files[1]), names=(str(files[0]), str(files[1])),
                             ignore=tuple(args.ignore or ()))
    print(diff.summary())
    return 0


def _models(args: argparse.Namespace) -> int:
    import marginlab.models as mm
    from marginlab.models.methodology import class_summary

    def block(title: str, registry: dict) -> list[str]:
        lines = [title, "=" * len(title)]
        for name in sorted(registry):
            summary, params = class_summary(registry[name])
            lines.append(f"{name}: {summary}")
            width = max((len(p.name) for p in params), default=0)
            for p in params:
                desc = f"  {p.description}" if p.description else ""
                lines.append(f"    {p.name.ljust(width)}  {p.type} = {_fmt_default(p.default)}{desc}")
            lines.append("")
        return lines

    out = block("Margin models (study: [[models]] name = ..., params = {...})", mm.MODELS)
    overlays = getattr(mm, "OVERLAYS", None)
    if overlays:
        out += block("Overlays (study: overlays = [{ name = ..., params = {...} }] in a [[models]] entry)", overlays)
    print("\n".join(out).rstrip())
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from marginlab.validation.executors import executor_from_args, make_executor
    from marginlab.validation.sweep import run_sweep

    settings = executor_from_args(args)
    with make_executor(settings["executor"] or "auto", workers=settings["workers"],
                       scheduler=settings["scheduler"]) as executor:
        result = run_sweep(args.study, args.grid, out=args.out, executor=executor)
    print(result.summary())
    print(f"\nsweep written to {result.path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``marginlab`` command."""
    from marginlab.validation.executors import add_executor_arguments

    path = os.path.expanduser  # every path argument: '~' expanded as in study.out (a quoted '~' is not a folder)
    parser = argparse.ArgumentParser(prog="marginlab", description="Margin-model validation on "
                                     "real crypto market history.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_data = sub.add_parser("datasets", help="list (or build) the bundled datasets")
    p_data.add_argument("action", nargs="?", choices=["list", "build"], default="list")
    p_data.add_argument("--raw", type=path, help="raw data folder for 'build'")
    p_data.add_argument("--out", type=path, help="output folder for 'build' (default: bundled data); must be "
                                                 "new, empty or a previous build")
    p_data.set_defaults(func=_datasets)
    p_run = sub.add_parser("run", help="run a study (TOML) and write its report")
    p_run.add_argument("study", nargs="?", default=None, type=path,
                       help="study config (default: the bundled default study)")
    p_run.add_argument("--out", default=None, type=path, help="report folder (overrides the config); must be "
                                                             "new, empty or a previous marginlab report")
    add_executor_arguments(p_run)
    p_run.set_defaults(func=_run)
    p_show = sub.add_parser("show", help="print the verdict matrix of a report written before")
    p_show.add_argument("report", type=path, help="report folder (marginlab run --out)")
    p_show.set_defaults(func=_show)
    p_diff = sub.add_parser("diff", help="what moved between two runs (two report folders or backtest.csv files)")
    p_diff.add_argument("before", type=path, help="report folder or backtest.csv of the first run")
    p_diff.add_argument("after", type=path, help="report folder or backtest.csv of the second run")
    p_diff.add_argument("--ignore", action="append", metavar="COLUMN",
                        help="a value column to leave out of the comparison (repeatable; e.g. mc_se against a run "
                             "written before marginlab stated the Monte Carlo error)")
    p_diff.set_defaults(func=_diff)
    p_models = sub.add_parser("models", help="list the registered margin models (and overlays) with their parameters")
    p_models.set_defaults(func=_models)
    p_sweep = sub.add_parser("sweep", help="run a study's books over a grid of model parameters")
    p_sweep.add_argument("study", type=path, help="study config (market, books, MPOR, seed; its models are replaced)")
    p_sweep.add_argument("--grid", required=True, type=path,
                         help="grid file: [[models]] entries, list-valued parameters swept")
    p_sweep.add_argument("--out", required=True, type=path,
                         help="sweep folder; must be new, empty or a previous marginlab sweep")
    add_executor_arguments(p_sweep, books_per_task=False,
                           title="execution (one task per grid point; a sweep does not read [execution])")
    p_sweep.set_defaults(func=_sweep)
    return parser


def is_user_error(exc: BaseException) -> bool:
    """True when ``exc`` is an error the user can cause and fix (see module docstring)."""
    from marginlab.datasets import DataError

    if isinstance(exc, DataError | OSError):
        return True
    if not isinstance(exc, ValueError):
        return False
    tb = exc.__traceback__
    if tb is None:
        return True
    while tb.tb_next is not None:
        tb = tb.tb_next
    return Path(tb.tb_frame.f_code.co_filename).resolve().parent in _own_code()


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        names = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        return f"{names}: {exc.strerror}" if names else exc.strerror
    return " ".join(part.strip() for part in str(exc).splitlines() if part.strip()) or type(exc).__name__


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """A marginlab warning (a UserWarning) as one line ``marginlab: warning: ...``; others as Python shows them."""
    if category is UserWarning:
        return f"marginlab: warning: {_one_line(message if isinstance(message, Warning) else Warning(message))}\n"
    return _python_format_warning(message, category, filename, lineno, line)


_python_format_warning = warnings.formatwarning


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``marginlab`` console script; returns the exit code (see module docstring)."""
    args = build_parser().parse_args(argv)
    warnings.formatwarning = _format_warning  # how Python prints a warning; a caller recording them gets them as such
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("marginlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a command that stopped reading (e.g. head)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Exception as exc:
        if is_user_error(exc):
            print(f"marginlab: error: {_one_line(exc)}", file=sys.stderr)
            return 2
        traceback.print_exc()
        print("marginlab: internal error: this is a bug in marginlab, not in your input; please report it "
              "with the command you ran and the traceback above", file=sys.stderr)
        return 1
    finally:
        warnings.formatwarning = _python_format_warning


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
