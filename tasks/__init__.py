"""halbench.tasks (installed from the top-level `tasks/` folder via setuptools package-dir)."""

# Guard: this folder is only importable as halbench.tasks, never as a top-level package.
if __name__ != "halbench.tasks":
    raise ImportError(f"import this package as 'halbench.tasks', not {__name__!r}")
