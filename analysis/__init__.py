"""Analysis of a results directory: robustness metrics, figures and the report.

Pure functions from tidy DataFrames to tidy DataFrames (``analysis.metrics``, the
learning-rate shift and stability margin in ``analysis.shift``, the column checks
in ``analysis.frames``), figures drawn from those
(``analysis.figures``), and a report assembled from both: the study's cells
(``analysis.study``), its sections (``analysis.sections``), the summary sentences
(``analysis.findings``) and the files (``analysis.render``), composed by
``analysis.report``. From ``robustness`` the analysis imports only the results
schema, the reader of a killed study's parts (``robustness.results.store``), the
capping rule and the error type the CLI turns into exit code 2.
"""
