"""halbench.reports (installed from the top-level `reports/` folder via setuptools package-dir)."""

# Guard: this folder is only importable as halbench.reports, never as a top-level package.
if __name__ != "halbench.reports":
    raise ImportError(f"import this package as 'halbench.reports', not {__name__!r}")
