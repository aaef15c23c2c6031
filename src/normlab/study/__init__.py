"""The seed's two studies as grids of runs (their reports are ``normlab.report``'s job).

- ``grids``: every experiment of each study (``Variant``: a name, a label, config overrides),
  and a user's own grid (a TOML file, ``load_grid``); ``budgets``: named budgets (an epoch cap
  and config overrides); ``settings``: the shared ``StudySettings`` (study.json).
- ``runs``: one run as data: its config (``run_config``), written as its config.json before it
  starts, and the command that trains it (``normlab <kind> train --config FILE``).
- ``checks``: a study's inputs, checked once before the first run; ``estimate``: its wall time.
- ``runner``: ``run_study(settings, cluster=...)`` runs a grid, one process per run; skips
  finished runs, resumes interrupted ones.
- ``backends``: what both backends share (``Task``, ``ClusterSettings``, progress, events);
  ``local``: a process pool on this machine (``--jobs`` at once); ``ray_backend``: one Ray
  task per run on a Ray cluster (``--cluster ray``).
- ``timefmt``: durations as h:mm:ss, for the progress lines and the reports.

Nothing here imports ``normlab.report`` except the runner's call that writes the report at
the end of a study.
"""
