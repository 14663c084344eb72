"""The one error type of the analysis and report code."""

from __future__ import annotations


class AnalysisInputError(ValueError):
    """Bad input to an analysis or report function; the message names the problem and the fix."""
