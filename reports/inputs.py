"""What `halbench report` accepts, sorted into eval runs, a training folder and run labels.

Each argument is one of (checked in this order):
- an eval run: a folder with results.json;
- a train-and-eval folder: OUT with OUT/base and OUT/trained runs (and OUT/train): both runs, plus the
  training folder; a train-and-eval whose training failed has only OUT/base and still reports;
- a training folder: OUT/train itself (status.json or metrics.jsonl), or `halbench train`'s OUT (holding
  train/), or a `halbench bdhs generate` folder (pairs.jsonl + stats.json);
- anything else: an error naming what the folder holds, so the user sees which subfolder to pass.
A label is given as DIR=LABEL or with --label (one per eval run, in order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from halbench.errors import HalbenchError

from halbench.reports.loading import is_pairs_dir


@dataclass
class ReportInputs:
    runs: list[Path] = field(default_factory=list)
    labels: list[str | None] = field(default_factory=list)
    training: Path | None = None
    home: Path | None = None  # the one folder named, when it holds the runs (train-and-eval / train OUT)

    def default_output(self) -> Path:
        """Where report.html goes without -o: the named train-and-eval / train folder, else the last run,
        else the training folder itself (never over another command's report)."""
        if self.home is not None:
            return self.home / "report.html"
        return (self.runs[-1] if self.runs else self.training) / "report.html"


def _is_run(p: Path) -> bool:
    return (p / "results.json").is_file()


def _is_training(p: Path) -> bool:
    return (p / "status.json").is_file() or (p / "metrics.jsonl").is_file() or is_pairs_dir(p)


def split_label(arg: str) -> tuple[Path, str | None]:
    """'runs/dpo=DPO' -> (runs/dpo, 'DPO'); a path that itself exists is never split."""
    if Path(arg).exists() or "=" not in arg:
        return Path(arg), None
    path, _, label = arg.rpartition("=")
    return Path(path), label.strip() or None


def describe(p: Path) -> str:
    """What a folder holds, for the error message."""
    if not p.is_dir():
        return f"{p} does not exist"
    found = []
    for sub in sorted(x for x in p.iterdir() if x.is_dir())[:12]:
        state = "a finished run" if _is_run(sub) else "a train-and-eval folder" if _is_run(sub / "base") else \
            "a training folder" if _is_training(sub) or _is_training(sub / "train") else \
            "unfinished run (no results.json)" if (sub / "config.yaml").is_file() else None
        if state:
            found.append(f"{sub.name}/ ({state})")
    inside = "; it holds " + ", ".join(found) if found else ""
    return (f"{p} is not a finished halbench run (no results.json), a training folder (status.json, "
            f"metrics.jsonl) or a train-and-eval folder (base/, trained/){inside}")


def resolve(args: list[str], labels: list[str] = ()) -> ReportInputs:
    out = ReportInputs()
    trainings: list[Path] = []
    for arg in args:
        p, label = split_label(arg)
        if _is_run(p):
            out.runs.append(p)
            out.labels.append(label)
        elif _is_run(p / "base") and not _is_run(p):
            for name in ("base", "trained"):
                if _is_run(p / name):
                    out.runs.append(p / name)
                    out.labels.append(f"{label}: {name}" if label else None)
            if _is_training(p / "train"):
                trainings.append(p / "train")
            out.home = p if len(args) == 1 else None
        elif _is_training(p):
            trainings.append(p)
        elif _is_training(p / "train"):
            trainings.append(p / "train")
            out.home = p if len(args) == 1 else None
        else:
            raise HalbenchError(describe(p))
    if len(trainings) > 1:
        raise HalbenchError("a report shows one training folder; got " + ", ".join(map(str, trainings)))
    out.training = trainings[0] if trainings else None
    if labels:
        if len(labels) != len(out.runs):
            raise HalbenchError(f"--label given {len(labels)} time(s) for {len(out.runs)} eval run(s) "
                                f"({', '.join(map(str, out.runs))}); give one per run, in order")
        out.labels = list(labels)
    if not out.runs and out.training is None:
        raise HalbenchError("nothing to report")
    return out
