"""The seed's two studies as grids of runs, and their report.

- ``grids``: every experiment of each study (``Variant``), the shared ``StudySettings``,
  and the argv of one single run.
- ``runner``: ``run_study(settings, cluster=...)`` runs a grid, one process per run; skips
  finished runs, resumes interrupted ones.
- ``backends``: what both backends share (``Task``, ``ClusterSettings``, progress, events);
  ``local``: a process pool on this machine (``--jobs`` at once); ``ray_backend``: one Ray
  task per run on a Ray cluster (``--cluster ray``).
- ``report``: ``write_report(study_dir)`` turns run directories into report.md/.html.
"""
