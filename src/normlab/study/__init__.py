"""The seed's two studies as grids of runs, and their report.

- ``grids``: every experiment of each study (``Variant``), the shared ``StudySettings``,
  and the argv of one single run.
- ``runner``: ``run_study(settings, cluster=...)`` runs a grid, one process per run; skips
  finished runs, resumes interrupted ones.
- ``backends``: what both backends share (``Task``, ``ClusterSettings``, progress, events);
  ``local``: a process pool on this machine (``--jobs`` at once); ``ray_backend``: one Ray
  task per run on a Ray cluster (``--cluster ray``).
- ``report``: ``write_report(study_dir)`` turns run directories into report.md/.html, one section
  per question of the study; ``answers_resnet`` / ``answers_ner`` compute each question's answer
  (wording shared in ``answers_common``), ``report_data`` loads, ``report_header`` / ``report_tables`` /
  ``report_plots`` / ``report_render`` make the rest.
"""
