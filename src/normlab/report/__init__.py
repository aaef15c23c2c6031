"""Study folders to reports: ``write_report(study_dir)`` writes report.md, report.html and figures.

A layer above ``normlab.study`` (which runs the grids): it reads study.json and the run
directories and never starts a run. See ``write`` for the map of its modules.
"""

from normlab.report.write import write_report

__all__ = ["write_report"]
