"""Stage 5, report: summary.md, report.html, figures and the comparison of two runs.

Stage: report. May import causal, experiments.errors, the config, run and steps stages.
Everything here reads a run's results or its folder; nothing runs the model.
"""

from experiments.report._compare import RunComparison, compare_runs, write_comparison
from experiments.report._figures import edge_graph, mediation_heatmap
from experiments.report._html import redact, render_report, write_report
from experiments.report._summary import render_summary

__all__ = [
    "RunComparison",
    "compare_runs",
    "edge_graph",
    "mediation_heatmap",
    "redact",
    "render_report",
    "render_summary",
    "write_comparison",
    "write_report",
]
