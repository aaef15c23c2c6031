"""The seed's two studies as grids of runs, and their report.

- ``grids``: every experiment of each study (``Variant``), the shared ``StudySettings``,
  and the argv of one single run.
- ``runner``: ``run_study(settings)`` runs a grid, one process per run; skips finished
  runs, resumes interrupted ones, ``--jobs`` at once.
- ``report``: ``write_report(study_dir)`` turns run directories into report.md/.html.
"""
