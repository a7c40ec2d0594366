"""Render a study result: a self-contained HTML report (plots embedded), JSON and CSV."""

from .writer import render_html, write_report

__all__ = ["render_html", "write_report"]
