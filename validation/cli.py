"""The ``marginlab`` command line.

``marginlab datasets`` prints the catalogue of bundled datasets;
``marginlab datasets build --raw DIR`` rebuilds them from the raw files;
``marginlab run [STUDY.toml] [--out DIR]`` runs a study and writes its report.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _datasets(args: argparse.Namespace) -> int:
    if args.action == "build":
        from marginlab.datasets.build import main as build_main

        if not args.raw:
            print("marginlab datasets build: --raw DIR is required", file=sys.stderr)
            return 2
        return build_main(["--raw", args.raw] + (["--out", args.out] if args.out else []))
    import pandas as pd
    from marginlab.datasets import catalog

    cat = catalog()[["name", "asset", "frequency", "first", "last", "rows", "source", "licence"]]
    with pd.option_context("display.width", 250, "display.max_colwidth", 60,
                           "display.max_rows", 200):
        print(cat.to_string(index=False))
    return 0


def _run(args: argparse.Namespace) -> int:
    from marginlab.validation.study import run_study

    result = run_study(args.study, out=args.out)
    print(result.summary())
    if result.report_path is not None:
        print(f"\nreport written to {result.report_path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``marginlab`` command."""
    parser = argparse.ArgumentParser(prog="marginlab", description="Margin-model validation on "
                                     "real crypto market history.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_data = sub.add_parser("datasets", help="list (or build) the bundled datasets")
    p_data.add_argument("action", nargs="?", choices=["list", "build"], default="list")
    p_data.add_argument("--raw", help="raw data folder for 'build'")
    p_data.add_argument("--out", help="output folder for 'build' (default: bundled data)")
    p_data.set_defaults(func=_datasets)
    p_run = sub.add_parser("run", help="run a study (TOML) and write its report")
    p_run.add_argument("study", nargs="?", default=None,
                       help="study config (default: the bundled default study)")
    p_run.add_argument("--out", default=None, help="output folder (overrides the config)")
    p_run.set_defaults(func=_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``marginlab`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from marginlab.datasets import DataError

    try:
        return int(args.func(args) or 0)
    except (DataError, ValueError) as exc:
        print(f"marginlab: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
