"""halbench.training (installed from the top-level `training/` folder via setuptools package-dir)."""

# Guard: this folder is only importable as halbench.training, never as a top-level package.
if __name__ != "halbench.training":
    raise ImportError(f"import this package as 'halbench.training', not {__name__!r}")
