"""The run report: summary.json, plots, the console summary and report.html."""
