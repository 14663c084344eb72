"""Study report: the paper's tables beside ours, the claims scorecard, the token page and the figures.

paper_tables   load results/paper/*.csv; Table 1/3/4/5 layouts with paper and our rows
claims         C1..C14 scorecard: per-claim input keys, checks, Markdown/CSV output
token_html     self-contained HTML page of kept / dropped tokens (Figures 13-14)
plots          figure helpers (Figures 1, 3, 5, 6, 7, 8, 9 analogs), PNG saved atomically
markdown       Markdown rendering and atomic CSV + Markdown table writing
"""

from rho.report.claims import CLAIMS, STATUSES, Claim, Verdict, load_claim_texts, scorecard, write_scorecard
from rho.report.markdown import to_markdown, write_table
from rho.report.paper_tables import add_delta_row, comparison_table, load_paper_table, paper_value
from rho.report.token_html import render_token_html, render_token_html_string

__all__ = [
    "CLAIMS",
    "STATUSES",
    "Claim",
    "Verdict",
    "add_delta_row",
    "comparison_table",
    "load_claim_texts",
    "load_paper_table",
    "paper_value",
    "render_token_html",
    "render_token_html_string",
    "scorecard",
    "to_markdown",
    "write_scorecard",
    "write_table",
]
