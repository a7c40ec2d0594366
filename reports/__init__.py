"""Render a study result: a self-contained HTML report (plots embedded), ``results.json`` and CSV.

The report is a list of sections (:mod:`marginlab.reports.sections`) driven by what the
result carries; the verdict (:mod:`marginlab.reports.verdict`) is its first screen and
what ``marginlab run`` and ``marginlab show`` print.
"""

from .sections import SECTIONS, Section, register_section
from .verdict import verdict_matrix, verdict_text
from .writer import (
    REPORT_FILES,
    REPORT_FOLDER,
    check_report_folder,
    read_results,
    render_html,
    report_files,
    results_dict,
    write_report,
)

__all__ = ["REPORT_FOLDER", "REPORT_FILES", "SECTIONS", "Section", "register_section", "check_report_folder",
           "read_results", "render_html", "report_files", "results_dict", "verdict_matrix", "verdict_text",
           "write_report"]
