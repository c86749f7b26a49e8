"""halbench.reports (installed from the top-level `reports/` folder via setuptools package-dir).

Runs -> plain data -> one self-contained HTML file:
    build(run_dirs, training_dir=None) -> ReportData      (build.py; numbers in stats.py, rows in views.py)
    render(data) -> str                                   (render.py; templates/*.html.j2, static/)
    write_report(run_dirs, out_path, training_dir=None) -> Path   (atomic write; optionally comparison.json
                                                          and .md/.csv tables, export.py)
Comparisons of caption tasks add length deltas and a length-matched control (length_control.py,
length_view.py); runs sharing a label form seed groups (groups.py); `halbench report` arguments are sorted
into runs / training folder by inputs.py; a training folder's data report comes from training_data.py.
"""

# Guard: this folder is only importable as halbench.reports, never as a top-level package.
if __name__ != "halbench.reports":
    raise ImportError(f"import this package as 'halbench.reports', not {__name__!r}")

from halbench.reports.build import build  # noqa: E402
from halbench.reports.model import ReportData  # noqa: E402
from halbench.reports.render import render, write_report  # noqa: E402

__all__ = ["build", "render", "write_report", "ReportData"]
