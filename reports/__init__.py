"""Render a study result: a self-contained HTML report (plots embedded), JSON and CSV."""

from .writer import REPORT_FOLDER, check_report_folder, render_html, report_files, write_report

__all__ = ["REPORT_FOLDER", "check_report_folder", "render_html", "report_files", "write_report"]
