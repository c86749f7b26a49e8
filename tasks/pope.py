"""POPE: Polling-based Object Probing Evaluation.

CARD
- Paper: Li et al., "Evaluating Object Hallucination in Large Vision-Language Models", EMNLP 2023
  (arXiv 2305.10355); code and data RUCAIBox/POPE (MIT).
- Data: JSONL question files {question_id, image, text, label}, 500 COCO val2014 images x 6 questions,
  one file per split (random / popular / adversarial negatives). Both released versions load:
  current (RUCAIBox/POPE 3df3ba1, 3000 questions per split; sha1 6bd64b181355 / 2ddef839bd5a /
  9dcf824d2262) and the older e3e3926 files used by LLaVA-1.5, OPERA and LLaVA-RLHF (random has 2910
  questions; "imange" typos; CRLF; sha1 aafe23e64abc / 01db93b86a1b / 233e8758ec6f), plus LLaVA's combined
  8910-question llava_pope_test.jsonl (sha1 bb499b0001d8; `category` field, no labels: labels come from the
  coco_pope_<category>.json files next to it, matched in order and checked question by question).
  The sha256 of every data file is recorded in results.json (`data_files`). `build_pope` (pope_builder.py)
  writes new files in this format from any COCO-format annotation file.
- Task spec: `pope` (all splits, official parsing), `pope:<variant>` (a parsing rule), or `pope:<split>`
  (one split; the parsing rule then comes from option `parse`). Options: data, image_root, splits,
  prompt_suffix, max_new_tokens (16), coco_root, version, hf_config / hf_split / hf_revision.
- Data sources: `coco_root=DIR` (`--coco-root`) or `image_root=DIR/val2014`: both released versions ship in
  the package (tasks/data/pope/, MIT, ATTRIBUTION.md); `version` 3df3ba1 (default, current) or e3e3926.
  `data=hf:lmms-lab/POPE` reads lmms-eval's copy (halbench.tasks.hf_datasets). `data=FILE|DIR`: own files.
  None of these: the embedded world's POPE files (allowed for the embedded model, or with --world).
  Protocol `llava-1.5` (halbench.tasks.protocols): e3e3926, LLaVA's suffix, max_new_tokens 128.
- Prompt: the question text as in the file (LLaVA's combined file already appends "\\nAnswer the question
  using a single word or phrase."); option `prompt_suffix` appends text to every question.
- Parsing (`variant`): `official` (default) POPE evaluate.py, identical in LLaVA eval_pope.py: keep the
  text before the first ".", drop ",", split on " ", "no" if the words contain "No", "no" or "not", else
  "yes" (never "other"). `opera`: OPERA's recorder: drop "." and ",", "no" if a word is No/no/NO/not or
  ends in "n't", else "yes". `lmms-eval`: lower().strip() must equal "yes" or "no", else "other".
  `vlmevalkit`: YOrN_Extraction after process_punctuation (quirks included: the period regex is applied
  with count=re.UNICODE=32): "yes" without "no" -> yes, "no" without "yes" -> no, else "other".
  Every row of refdata answer_parsing_cases.jsonl is checked for every variant (tests/test_pope.py).
- Metrics per split (positive class = "yes"): tp/fp/tn/fn over yes/no predictions; n_other answers that
  are neither (they count as wrong in accuracy and in no other rate); accuracy = (tp+tn)/n,
  precision = tp/(tp+fp), recall = tp/(tp+fn), f1, yes_ratio = predicted yes / n (from predictions, not
  from labels as lmms-eval does). Top-level accuracy/precision/recall/f1/yes_ratio are the mean over the
  splits scored (LLaVA-1.5 reports this mean); top-level counts are sums. Directions: all higher except
  yes_ratio (none; 0.5 is balanced).
- Parity: parsing matches the four official implementations on all 46 reference cases; metric formulas
  are POPE evaluate.py's.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from halbench.errors import DataError, HalbenchError
from halbench.schema import GenerationSettings, Metric, Request, Response
from halbench.task import Task

from halbench.tasks.world_source import WORLD_WORDS, task_world
from halbench.tasks.pope_builder import build_pope  # noqa: F401  (public API: halbench.tasks.pope.build_pope)

SPLITS = ("random", "popular", "adversarial")
LLAVA_SUFFIX = "\nAnswer the question using a single word or phrase."
RATE_KEYS = ("accuracy", "precision", "recall", "f1", "yes_ratio")
COUNT_KEYS = ("tp", "fp", "tn", "fn", "n_other")


# ---------------------------------------------------------------------------------------------------
# Answer parsing
# ---------------------------------------------------------------------------------------------------
def _official(text: str) -> str:
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


def _opera(text: str) -> str:
    words = text.replace(".", "").replace(",", "").split(" ")
    if any(w in ("No", "not", "no", "NO") for w in words) or any(w.endswith("n't") for w in words):
        return "no"
    return "yes"


def _lmms_eval(text: str) -> str:
    pred = text.lower().strip()
    return pred if pred in ("yes", "no") else "other"


_VLM_PUNCT = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",",
              "?", "!"]
_VLM_COMMA = re.compile(r"(\d)(,)(\d)")
_VLM_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")


def _vlmevalkit(text: str) -> str:
    s = text.lower()
    out = s
    for p in _VLM_PUNCT:  # VLMEvalKit process_punctuation, as written
        if (p + " " in s or " " + p in s) or _VLM_COMMA.search(s) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    words = _VLM_PERIOD.sub("", out, re.UNICODE).split()  # count=re.UNICODE (=32), a quirk kept on purpose
    if "yes" in words and "no" not in words:
        return "yes"
    if "yes" not in words and "no" in words:
        return "no"
    return "other"


PARSERS = {"official": _official, "opera": _opera, "lmms-eval": _lmms_eval, "vlmevalkit": _vlmevalkit}


def parse_answer(text: str, variant: str = "official") -> str:
    """'yes' | 'no' | 'other' for a model answer under one implementation's rule (see the card)."""
    if variant not in PARSERS:
        raise HalbenchError(f"unknown POPE parsing variant {variant!r}; choose one of {', '.join(PARSERS)}")
    return PARSERS[variant](text)


# ---------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------
def _split_metrics(recs: list[dict[str, Any]]) -> dict[str, Any]:
    c = {k: 0 for k in COUNT_KEYS}
    for r in recs:
        yes_label, pred = r["label"] == "yes", r["pred"]
        if pred == "other":
            c["n_other"] += 1
        elif pred == "yes":
            c["tp" if yes_label else "fp"] += 1
        else:
            c["fn" if yes_label else "tn"] += 1
    n = len(recs)
    div = lambda a, b: a / b if b else None  # noqa: E731 - undefined rather than a made-up 0
    p, rc = div(c["tp"], c["tp"] + c["fp"]), div(c["tp"], c["tp"] + c["fn"])
    f1 = (2 * p * rc / (p + rc) if (p + rc) else 0.0) if p is not None and rc is not None else None
    return {"accuracy": div(c["tp"] + c["tn"], n), "precision": p, "recall": rc, "f1": f1,
            "yes_ratio": div(c["tp"] + c["fp"], n), **c, "n": n}


def pope_metrics(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-split metrics as '<split>/<metric>' keys, their mean over splits, and summed counts."""
    ok = [r for r in records if not r.get("error")]
    splits = sorted({r["split"] for r in ok}, key=lambda s: (SPLITS.index(s) if s in SPLITS else 9, s))
    out: dict[str, Any] = {}
    per = {s: _split_metrics([r for r in ok if r["split"] == s]) for s in splits}
    for s, m in per.items():
        out.update({f"{s}/{k}": v for k, v in m.items()})
    for k in RATE_KEYS:
        vals = [m[k] for m in per.values() if m[k] is not None]
        out[k] = sum(vals) / len(vals) if vals and len(vals) == len(per) else None
    for k in COUNT_KEYS:
        out[k] = sum(m[k] for m in per.values())
    out.update(n_splits=len(per), n_samples=len(records), n_errors=len(records) - len(ok))
    return out


# ---------------------------------------------------------------------------------------------------
# Question files
# ---------------------------------------------------------------------------------------------------
def _read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise DataError("POPE question file not found", path=path)
    from halbench.textio import jsonl_objects

    return jsonl_objects(path, "POPE file")  # CRLF-safe; non-UTF-8 bytes and non-object lines named by line


def split_of(path: Path) -> str | None:
    m = re.search(r"_pope_(random|popular|adversarial)\.jsonl?$", path.name)
    return m.group(1) if m else None


def norm_question(text: str) -> str:
    """For cross-version checks: the e3e3926 files say 'imange', LLaVA appends an instruction."""
    return text.replace(LLAVA_SUFFIX, "").replace("imange", "image").strip().lower()


def _question(path: Path, n: int, row: dict[str, Any], split: str | None) -> dict[str, Any]:
    for key in ("question_id", "image", "text"):
        if key not in row:
            raise DataError(f"missing key {key!r}", path=path, line=n)
    split = row.get("category") or split
    if not split:
        raise DataError("cannot tell the split: name the file *_pope_<split>.json or add 'category'", path=path, line=n)
    label = row.get("label")
    if label is not None and label not in ("yes", "no"):
        raise DataError(f"label must be 'yes' or 'no', not {label!r}", path=path, line=n)
    return {"question_id": row["question_id"], "image": row["image"], "text": row["text"], "label": label,
            "split": split, "source": str(path), "line": n}


def _attach_labels(path: Path, questions: list[dict[str, Any]]) -> None:
    """LLaVA's combined file has no labels; eval_pope.py takes them, in order, from coco_pope_<split>.json."""
    for split in sorted({q["split"] for q in questions}):
        label_file = path.with_name(f"coco_pope_{split}.json")
        if not label_file.is_file():
            raise DataError(f"no labels: {label_file.name} must sit next to the combined file", path=path)
        labelled = [r for _, r in _read_jsonl(label_file)]
        mine = [q for q in questions if q["split"] == split]
        if len(labelled) != len(mine):
            raise DataError(f"{len(mine)} {split} questions but {len(labelled)} in {label_file.name} "
                            "(different POPE versions?)", path=path)
        for q, ref in zip(mine, labelled):
            if q["image"] != ref["image"] or norm_question(q["text"]) != norm_question(ref["text"]):
                raise DataError(f"question {q['question_id']} does not match {label_file.name} question "
                                f"{ref['question_id']}", path=path, line=q["line"])
            q["label"] = ref["label"]


def load_pope(data: str | Path | None = None, splits: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Questions {question_id, image, text, label, split, source, line} from a file or a folder of
    *_pope_<split>.json files (None: the embedded world's pope_dir). `splits` keeps only those splits."""
    if data is None:
        from halbench.world import default_world

        data = default_world().pope_dir
    path = Path(data)
    files = sorted(path.glob("*_pope_*.json")) if path.is_dir() else [path]
    if not files:
        raise DataError("no *_pope_<split>.json files in this folder", path=path)
    questions: list[dict[str, Any]] = []
    for f in files:
        if splits and split_of(f) and split_of(f) not in splits:
            continue
        qs = [_question(f, n, r, split_of(f)) for n, r in _read_jsonl(f)]
        qs = [q for q in qs if not splits or q["split"] in splits]
        if any(q["label"] is None for q in qs):
            _attach_labels(f, qs)
        questions += qs
    seen: dict[tuple[str, Any], dict[str, Any]] = {}
    for q in questions:
        key = (q["split"], q["question_id"])
        if key in seen:
            raise DataError(f"duplicated question_id {q['question_id']} in split {q['split']} "
                            f"(first at {seen[key]['source']}:{seen[key]['line']})", path=q["source"], line=q["line"])
        seen[key] = q
    if splits and not questions:
        raise DataError(f"no questions for split(s) {', '.join(splits)}", path=path)
    return questions


# ---------------------------------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------------------------------
class PopeTask(Task):
    """POPE yes/no object probing; the variant is the answer-parsing rule (see the module card)."""

    name = "pope"
    data_roots = ("coco",)  # --coco-root DIR reaches this task as option coco_root
    variants = {"official": "POPE evaluate.py rule (= LLaVA eval_pope.py)", "opera": "OPERA recorder rule",
                "lmms-eval": "exact yes/no after lower().strip()", "vlmevalkit": "VLMEvalKit YOrN_Extraction"}
    metrics = (
        Metric("accuracy", "higher", "mean over splits"), Metric("precision", "higher", "mean over splits"),
        Metric("recall", "higher", "mean over splits"), Metric("f1", "higher", "mean over splits"),
        Metric("yes_ratio", "none", "share of 'yes' predictions (0.5 is balanced)"),
    )
    version = "1"

    def __init__(self, variant: str | None = None, **options: Any):
        if variant in SPLITS:  # "pope:adversarial" names a split; the parsing rule then comes from `parse`
            options.setdefault("splits", variant)
            variant = options.pop("parse", None)
        super().__init__(variant, **options)
        splits = options.get("splits") or SPLITS
        self.splits = tuple(splits.split(",")) if isinstance(splits, str) else tuple(splits)
        self._samples: list[dict[str, Any]] | None = None
        self._coco = None
        if options.get("coco_root"):  # --coco-root: the packaged question files + DIR/val2014 images
            from halbench.tasks.data_roots import CocoRoot

            self._coco = CocoRoot.open(options["coco_root"])
            self._coco.require_images()
        from halbench.tasks.data_roots import packaged_pope

        self.pope_version = packaged_pope(options.get("version")).name  # checks the name up front

    def uses_world(self) -> bool:
        """True when no data is configured: the questions and images come from the embedded world."""
        return not (self.options.get("data") or self._coco or self.options.get("image_root"))

    def _data(self):
        """data= wins; with COCO images (coco_root / image_root) the packaged files of `version`; else the world."""
        if self.options.get("data"):
            return self.options["data"]
        if self.uses_world():
            return task_world(self.options).pope_dir
        from halbench.tasks.data_roots import packaged_pope

        return packaged_pope(self.pope_version)

    def samples(self) -> list[dict[str, Any]]:
        if self._samples is None:
            from halbench.tasks.hf_datasets import hf_id, pope_questions

            if hf_id(self.options.get("data")):
                o = self.options
                questions = pope_questions(hf_id(o["data"]), o.get("hf_config"), o.get("hf_split"),
                                           o.get("hf_revision"), self.splits)
            else:
                questions = load_pope(self._data(), self.splits)
            self._samples = [{"id": f"{q['split']}/{q['question_id']}", **q, "image_path": self._image(q)}
                             for q in questions]
        return self._samples

    def data_source(self) -> str:
        """The data in words, for results.json and the report header."""
        from halbench.tasks.hf_datasets import describe_hf, hf_id

        n = f"{len(self.samples()):,} questions"
        if self.uses_world():
            return f"{WORLD_WORDS} ({task_world(self.options).root}), POPE-format questions, {n}"
        if hf_id(self.options.get("data")):
            return f"Hugging Face dataset {describe_hf(self.options)}, {n}"
        if not self.options.get("data"):
            root = self._coco.root if self._coco else self.options["image_root"]
            return f"COCO val2014 ({root}), POPE {self.pope_version}, {n}"
        return f"POPE question files {self._data()}, {n}"

    def _image(self, q: dict[str, Any]) -> str:
        if q.get("image_path"):  # a Hugging Face copy: the embedded image, written to the cache
            return q["image_path"]
        root = self.options.get("image_root") or (self._coco.val2014 if self._coco else None)
        if root:
            from halbench.images import image_under

            return str(image_under(root, q["image"], q.get("source")))
        world = task_world(self.options)
        direct = Path(world.images_dir) / q["image"]
        if direct.is_file():
            return str(direct)
        from halbench.tasks.chair import image_id_of

        return str(world.image_path(image_id_of(q["image"])))

    def request(self, sample: dict[str, Any]) -> Request:
        prompt = sample["text"] + self.options.get("prompt_suffix", "")
        gen = GenerationSettings(max_new_tokens=int(self.options.get("max_new_tokens", 16)))
        return Request(id=sample["id"], prompt=prompt, image=sample["image_path"], generation=gen)

    def score(self, sample: dict[str, Any], response: Response) -> dict[str, Any]:
        from halbench.tasks.chair import image_id_of

        pred = parse_answer(response.text, self.variant)
        return {"question_id": sample["question_id"], "split": sample["split"], "label": sample["label"],
                "pred": pred, "correct": pred == sample["label"], "image_id": image_id_of(sample["image"])}

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return pope_metrics(records)

    def data_files(self) -> list[Path]:
        return sorted({Path(s["source"]) for s in self.samples() if not s["source"].startswith("hf:")})

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["splits"] = list(self.splits)
        return d

    @classmethod
    def score_predictions(cls, predictions, data=None, gt=None, coco_annotations=None, variant=None,
                          synonyms=None) -> dict[str, Any]:
        """Score a JSONL of {question_id, text} against question file(s) (`halbench score pope`)."""
        metrics, _ = score_answer_file(predictions, data=data, variant=variant or "official")
        return metrics


def _match(by_id: dict[Any, list[dict[str, Any]]], row: dict[str, Any], path, n: int) -> dict[str, Any]:
    qid, split = row["question_id"], row.get("split") or row.get("category")
    cands = [q for q in by_id.get(qid, []) if split is None or q["split"] == split]
    if not cands:
        raise DataError(f"unknown question_id {qid!r}" + (f" in split {split}" if split else ""), path=path, line=n)
    if len(cands) > 1:
        raise DataError(f"question_id {qid!r} exists in several splits ({', '.join(q['split'] for q in cands)}); "
                        "give one split's file as data or add a 'split' field", path=path, line=n)
    q = cands[0]
    asked = row.get("prompt", row.get("question"))
    if isinstance(asked, str) and norm_question(asked) != norm_question(q["text"]):
        raise DataError(f"question {qid} asks {asked!r} but the data file has {q['text']!r} "
                        "(predictions for another split or POPE version?)", path=path, line=n)
    return q


def _record(q: dict[str, Any], row: dict[str, Any], variant: str, n: int, path=None) -> dict[str, Any]:
    text = row.get("text", row.get("answer"))
    if "error" not in row and not isinstance(text, str):  # not a failed generation: a malformed line
        raise DataError("expected a string 'text' (or 'answer') field with the model's answer", path=path, line=n)
    if row.get("error") or not isinstance(text, str):  # a failed generation is counted, never parsed
        return {"question_id": q["question_id"], "split": q["split"], "error": row.get("error") or "no text"}
    pred = parse_answer(text, variant)
    return {"question_id": q["question_id"], "split": q["split"], "label": q["label"], "pred": pred,
            "correct": pred == q["label"], "line": n}


def score_answer_file(predictions, data=None, variant: str = "official", splits=None):
    """(metrics, records); unknown/duplicated ids, wrong-split questions and unanswered questions raise."""
    questions = load_pope(data, tuple(splits) if splits else None)
    by_id: dict[Any, list[dict[str, Any]]] = {}
    for q in questions:
        by_id.setdefault(q["question_id"], []).append(q)
    records, seen, checked = [], {}, 0
    for n, row in _read_jsonl(Path(predictions)):
        if "question_id" not in row:
            raise DataError("missing question_id", path=predictions, line=n)
        q = _match(by_id, row, predictions, n)
        key = (q["split"], q["question_id"])
        if key in seen:
            raise DataError(f"question_id {key[1]} already answered on line {seen[key]}", path=predictions, line=n)
        seen[key] = n
        checked += isinstance(row.get("prompt", row.get("question")), str)
        records.append(_record(q, row, variant, n, predictions))
    unanswered = [q for q in questions if (q["split"], q["question_id"]) not in seen]
    if unanswered:
        u = unanswered[0]
        raise DataError(f"{len(unanswered)} question(s) have no prediction, e.g. {u['split']} question_id "
                        f"{u['question_id']} ({u['source']}:{u['line']})", path=predictions)
    metrics = pope_metrics(records)
    order = {s: i for i, s in enumerate(SPLITS)}
    metrics.update(variant=variant,
                   splits=sorted({q["split"] for q in questions}, key=lambda s: (order.get(s, 9), s)),
                   n_questions_text_checked=checked)
    return metrics, records
