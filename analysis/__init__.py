"""Analysis of a results directory: robustness metrics, figures and the report.

Pure functions from tidy DataFrames to tidy DataFrames (``analysis.metrics``),
figures drawn from those (``analysis.figures``), and a report assembled from both
(``analysis.report``).
"""
