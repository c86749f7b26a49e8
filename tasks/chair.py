"""CHAIR: Caption Hallucination Assessment with Image Relevance.

CARD
- Paper: Rohrbach et al., "Object Hallucination in Image Captioning", EMNLP 2018 (arXiv 1809.02156).
  Recall/Len and the OPERA pipeline: Huang et al., OPERA, CVPR 2024 (arXiv 2311.17911), whose chair.py
  (modified by Maxlinn) is also used by lmms-eval, less-is-more and the Object HalBench exercise scorer.
- Variants (the lemmatization pipeline; everything else is shared):
  `opera` (default) NLTK POS tag + WordNet lemmatizer (OPERA chair.py); `2018` pattern.en.singularize
  (LisaAnne/Hallucination utils/chair.py; no "train track" double word).
- Data: synonym lists in halbench/tasks/data (ATTRIBUTION.md): `coco2018` = LisaAnne/Hallucination
  data/synonyms.txt (sha1 d1b92abb3dcf), `objhal_refined` = RLAIF-V eval/data/synonyms_refine.txt
  (sha1 a283d7461550). Ground truth: COCO instances + captions (processed by the same pipeline, as the
  official code does), a precomputed {image_id: [objects]} JSON (one file, or `*_partKofN.json` parts),
  or the embedded world. Image list: `chair500_less_is_more.jsonl` (sha1 6f34ec5ca349, 500 COCO val2014
  images sampled with seed 0 by yuezih/less-is-more) unless `image_list` names another file.
- Prompt: "Please describe this image in detail."; protocol `chair500-512` (max_new_tokens 512, caption
  scored whole) or `chair-64` (max_new_tokens 64; the text after the last "." is dropped, as in the
  commented-out lines of OPERA chair.py; a caption without any "." is kept whole).
- Parsing: caption.lower() -> Punkt sentences -> Treebank tokens -> lemmas -> official double words
  ("wine glass", "baby bird"->bird, "toilet seat"->toilet, ...) -> if both "toilet" and "seat" remain, every
  "seat" is dropped -> words in the synonym table are mentions of their class (repeats counted).
- Metrics: chair_s = hallucinated captions / captions (lower better); chair_i = hallucinated mentions /
  mentions (lower better); recall = covered GT objects / GT objects, summed over captions (higher better);
  len = mean words per caption (official "Len" prints 100x its 0.01*mean); chair_s_refine = hallucinated
  captions / captions with at least one mention (RLHF-V's CHAIRs_refine); counts as ints. Captions that
  are empty are skipped and counted (n_skipped), never scored as "no hallucination".
- Parity: Object HalBench exercise run (kchaosun beam search, 300 captions) reproduces the official
  chair.py output exactly (73/300, 87/1287, 593/954, same hallucinated words per caption); OPERA's LLaVA-1.5
  `ours.jsonl` scores CHAIRs 44.6 / CHAIRi 12.8 at one decimal (tests/test_chair_parity.py). The sentence
  splitter and the 2018 singularizer are re-implementations (see chair_text.py for where they may differ).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from halbench.errors import DataError, HalbenchError
from halbench.schema import GenerationSettings, Metric, Request, Response
from halbench.task import Task

from halbench.tasks.world_source import task_world

from halbench.tasks import chair_text
from halbench.tasks.chair_text import DATA_DIR, SYNONYM_FILES, SynonymTable, double_word_dict  # noqa: F401 (public)

PIPELINES = ("opera", "2018")


@dataclass(frozen=True)
class Mention:
    """One object mention: surface `word` (caption[start:end]), COCO class `cls`, synonym-table `lemma`."""

    word: str
    cls: str
    start: int | None
    end: int | None
    lemma: str


@dataclass(frozen=True)
class Analysis:
    words: list[str]  # the official `words`: lemmas after double-word merging (its length is Len)
    mentions: list[Mention]


class ChairScorer:
    """Extract COCO object mentions from captions and score them against ground-truth object sets."""

    def __init__(self, synonyms: str | Path = "coco2018", pipeline: str = "opera", cache_size: int = 50000):
        if pipeline not in PIPELINES:
            raise HalbenchError(f"unknown CHAIR pipeline {pipeline!r}; choose one of {', '.join(PIPELINES)}")
        self.pipeline, self.synonyms = pipeline, SynonymTable.load(synonyms)
        self.double = double_word_dict(pipeline)
        self._lemmatizer = chair_text.opera_lemmatizer() if pipeline == "opera" else None
        self._cache: dict[str, Analysis] = {}
        self._cache_size = cache_size

    def _lemmas(self, tokens: list[str]) -> list[str]:
        if self._lemmatizer is not None:
            return self._lemmatizer.lemmatize(tokens)
        return [chair_text.singularize(t) for t in tokens]

    def analyze(self, caption: str) -> Analysis:
        hit = self._cache.get(caption)
        if hit is None:
            hit = self._analyze(caption)
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[caption] = hit
        return hit

    def _analyze(self, caption: str) -> Analysis:
        lower = caption.lower()
        tokens = chair_text.word_tokenize(lower)
        spans = chair_text.token_spans(lower, tokens) if len(lower) == len(caption) else [None] * len(tokens)
        lemmas = self._lemmas(tokens)
        merged: list[tuple[str, tuple[int, int] | None]] = []
        i = 0
        while i < len(lemmas):  # official double-word loop: greedy left-to-right pairs
            pair = " ".join(lemmas[i:i + 2])
            if pair in self.double:
                a, b = spans[i], spans[i + 1]
                merged.append((self.double[pair], (a[0], b[1]) if a and b else None))
                i += 2
            else:
                merged.append((lemmas[i], spans[i]))
                i += 1
        words = [w for w, _ in merged]
        if "toilet" in words and "seat" in words:  # "the seat of the toilet" is not a chair
            merged = [m for m in merged if m[0] != "seat"]
        inv = self.synonyms.inverse
        mentions = [
            Mention(caption[s[0]:s[1]] if s else w, inv[w], s[0] if s else None, s[1] if s else None, w)
            for w, s in merged if w in inv
        ]
        return Analysis(words, mentions)

    def extract(self, caption: str) -> list[Mention]:
        return self.analyze(caption).mentions

    def score_caption(self, caption: str, gt_objects: Iterable[str]) -> dict[str, Any]:
        """The per-caption record (TEAM.md chair fields + counts); gt_objects are class names."""
        gt = set(gt_objects)
        a = self.analyze(caption)
        halluc = [m for m in a.mentions if m.cls not in gt]
        correct = [m.cls for m in a.mentions if m.cls in gt]
        covered = sorted(set(correct))
        return {
            "caption": caption,
            "mentioned": [m.cls for m in a.mentions],
            "words": [m.word for m in a.mentions],
            "mention_lemmas": [m.lemma for m in a.mentions],
            "mention_spans": [[m.start, m.end] if m.start is not None else None for m in a.mentions],
            "hallucinated": [m.cls for m in halluc],
            "hallucinated_words": [m.word for m in halluc],
            "correct_mentions": correct,
            "gt_objects": sorted(gt),
            "covered_gt_objects": covered,
            "n_words": len(a.words),
            "n_mentions": len(a.mentions),
            "n_hallucinated": len(halluc),
            "n_gt_objects": len(gt),
            "n_covered_gt_objects": len(covered),
        }


def chair_metrics(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Corpus-level CHAIR over scored records; error/skipped records are counted, never scored."""
    ok = [r for r in records if not r.get("error") and not r.get("skipped")]
    n = len(ok)
    n_h_caps = sum(1 for r in ok if r["n_hallucinated"] > 0)
    n_m = sum(r["n_mentions"] for r in ok)
    n_h = sum(r["n_hallucinated"] for r in ok)
    n_gt = sum(r["n_gt_objects"] for r in ok)
    n_cov = sum(r["n_covered_gt_objects"] for r in ok)
    n_with = sum(1 for r in ok if r["n_mentions"] > 0)
    ratio = lambda a, b: (a / b) if b else None  # noqa: E731 - undefined (not 0) on an empty denominator
    return {
        "chair_s": ratio(n_h_caps, n), "chair_i": ratio(n_h, n_m), "recall": ratio(n_cov, n_gt),
        "len": ratio(sum(r["n_words"] for r in ok), n),
        "chair_s_refine": ratio(n_h_caps, n_with),
        "n_captions": n, "n_hallucinated_captions": n_h_caps, "n_mentions": n_m, "n_hallucinated_mentions": n_h,
        "n_gt_objects": n_gt, "n_covered_gt_objects": n_cov, "n_captions_with_mentions": n_with,
        "n_samples": len(records), "n_errors": sum(1 for r in records if r.get("error")),
        "n_skipped": sum(1 for r in records if r.get("skipped") and not r.get("error")),
    }


# ---------------------------------------------------------------------------------------------------
# Ground truth
# ---------------------------------------------------------------------------------------------------
_PART_RE = re.compile(r"^(?P<stem>.*)_part(?P<k>\d+)of(?P<n>\d+)\.json$")


def image_id_of(value: Any) -> int | str:
    """12345, "12345", "COCO_val2014_000000012345.jpg", "000000012345.jpg" -> 12345; other strings kept."""
    if isinstance(value, bool):
        raise ValueError(f"not an image id: {value!r}")
    if isinstance(value, int):
        return value
    s = str(value).strip()
    m = re.fullmatch(r"(?:.*?_)?0*(\d+)(?:\.(?:jpg|jpeg|png))?", s, flags=re.I)
    return int(m.group(1)) if m else s


def load_gt(source: str | Path | list | None = None, *, pipeline: str = "opera", synonyms: str | Path = "coco2018",
            image_ids: Iterable[Any] | None = None) -> dict[int | str, set[str]]:
    """Ground-truth object sets {image_id: {class, ...}}.

    source: None or "world" -> the embedded world; a COCO annotations folder (instances_*.json +
    captions_*.json, read with pycocotools, captions parsed with `pipeline`/`synonyms` like the official
    code); a JSON file {image_id: [objects]} (a `*_part1of2.json` name loads every part); a folder of such
    JSON files; or a list of files. `image_ids` restricts what is kept (and what COCO captions are parsed).
    """
    keep = None if image_ids is None else {image_id_of(i) for i in image_ids}
    if source is None or str(source) == "world":
        from halbench.world import default_world

        source = default_world().gt_objects_json
    if isinstance(source, (list, tuple)):
        files = [Path(p) for p in source]
    else:
        p = Path(source)
        if p.is_dir() and list(p.glob("instances_*.json")):
            return _gt_from_coco(p, ChairScorer(synonyms, pipeline), keep)
        if p.is_dir():
            files = sorted(p.glob("*.json"))
        else:
            files = _part_files(p)
    gt: dict[int | str, set[str]] = {}
    for f in files:
        for k, v in _read_gt_json(f).items():
            if keep is None or k in keep:
                gt.setdefault(k, set()).update(v)
    return gt


def _part_files(p: Path) -> list[Path]:
    m = _PART_RE.match(p.name)
    if not m:
        return [p]
    n = int(m.group("n"))
    files = [p.with_name(f"{m.group('stem')}_part{k}of{n}.json") for k in range(1, n + 1)]
    for f in files:
        if not f.is_file():
            raise DataError(f"ground-truth part {f.name} is missing (all {n} parts are needed)", path=f)
    return files


def _read_gt_json(f: Path) -> dict[int | str, list[str]]:
    if not f.is_file():
        raise DataError("ground-truth file not found", path=f)
    try:
        from halbench.textio import read_text

        data = json.loads(read_text(f, "ground-truth file"))
    except json.JSONDecodeError as e:
        raise DataError(f"malformed JSON ({e.msg})", path=f, line=e.lineno) from e
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise DataError("expected a JSON object {image_id: [object class, ...]}", path=f)
    return {image_id_of(k): v for k, v in data.items()}


def _coco(f: Path):
    """pycocotools.COCO(f); a non-UTF-8 or malformed file is a DataError naming it (and the line)."""
    from pycocotools.coco import COCO

    try:
        return COCO(str(f))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        from halbench.textio import read_json

        read_json(f, "COCO annotation file")  # raises with the line
        raise DataError(f"cannot read COCO annotations ({e})", path=f) from e


def _gt_from_coco(folder: Path, scorer: ChairScorer, keep: set | None) -> dict[int | str, set[str]]:
    """Official get_annotations(): segmentation classes, then classes mentioned in the GT captions."""
    import contextlib
    import sys

    from pycocotools.coco import COCO
    from tqdm import tqdm

    gt: dict[int | str, set[str]] = {}
    inv = scorer.synonyms.inverse
    with contextlib.redirect_stdout(sys.stderr):  # pycocotools prints progress; stdout may carry --json
        inst = [_coco(f) for f in sorted(folder.glob("instances_*.json"))]
        caps = [_coco(f) for f in sorted(folder.glob("captions_*.json"))]
    if not caps:
        raise DataError("no captions_*.json next to the instances files (CHAIR GT needs both)", path=folder)
    for coco in inst:
        names = {c["id"]: c["name"] for c in coco.dataset.get("categories", [])}
        for ann in coco.dataset.get("annotations", []):
            if keep is None or ann["image_id"] in keep:
                name = names[ann["category_id"]]
                gt.setdefault(ann["image_id"], set()).add(inv.get(name, name))
    anns = [a for coco in caps for a in coco.dataset.get("annotations", []) if keep is None or a["image_id"] in keep]
    for ann in tqdm(anns, desc="CHAIR GT captions", disable=len(anns) < 5000, file=sys.stderr):
        gt.setdefault(ann["image_id"], set()).update(m.cls for m in scorer.extract(ann["caption"]))
    for coco in inst + caps:  # images with no annotation at all still have a (empty) GT set
        for img in coco.dataset.get("images", []):
            if keep is None or img["id"] in keep:
                gt.setdefault(img["id"], set())
    return gt


# ---------------------------------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------------------------------
PROMPT = "Please describe this image in detail."
PROTOCOLS = {"chair500-512": 512, "chair-64": 64, "chair500-64": 64}
DEFAULT_IMAGE_LIST = DATA_DIR / "chair500_less_is_more.jsonl"


def truncate_incomplete(caption: str) -> str:
    """64-token protocol (OPERA issue #30): drop the text after the last '.'; keep a caption without one."""
    pos = caption.rfind(".")
    return caption[: pos + 1] if pos >= 0 else caption


def read_image_list(path: str | Path) -> list[int | str]:
    """Image ids from a .txt (one id or file name per line) or .json/.jsonl (image_id or image field)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("image list not found", path=path)
    from halbench.textio import read_text

    ids: list[int | str] = []
    for n, line in enumerate(read_text(path, "image list").splitlines(), 1):
        if not line.strip():
            continue
        if path.suffix in (".json", ".jsonl"):
            try:
                row = json.loads(line)
                ids.append(image_id_of(row["image_id"] if "image_id" in row else row["image"]))
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise DataError(f"expected a JSON object with image_id or image ({e})", path=path, line=n) from e
        else:
            ids.append(image_id_of(line))
    if len(set(ids)) != len(ids):
        raise DataError("duplicated image ids in the image list", path=path)
    if not ids:
        raise DataError("the image list is empty", path=path)
    return ids


def _coco_image(root: Path, image_id: int | str) -> Path:
    names = [f"COCO_val2014_{image_id:012d}.jpg", f"{image_id:012d}.jpg"] if isinstance(image_id, int) else []
    from halbench.images import image_under

    for name in names + [str(image_id)]:
        if image_under(root, name).is_file():
            return root / name
    raise DataError(f"image {image_id} not found (tried {', '.join(names + [str(image_id)])})", path=root)


class ChairTask(Task):
    """CHAIR on captions generated for a fixed image list (see the module card)."""

    name = "chair"
    variants = {"opera": "NLTK POS + WordNet lemmas (OPERA chair.py; lmms-eval, less-is-more)",
                "2018": "pattern.en.singularize (Rohrbach et al. 2018 chair.py)"}
    metrics = (
        Metric("chair_s", "lower", "share of captions with at least one hallucinated object"),
        Metric("chair_i", "lower", "share of object mentions that are hallucinated"),
        Metric("recall", "higher", "share of ground-truth objects mentioned"),
        Metric("len", "none", "mean caption length in words"),
    )
    version = "1"

    def __init__(self, variant: str | None = None, **options: Any):
        super().__init__(variant, **options)
        self.protocol = options.get("protocol", "chair500-512")
        if self.protocol not in PROTOCOLS:
            raise HalbenchError(f"unknown CHAIR protocol {self.protocol!r}; choose one of {', '.join(PROTOCOLS)}")
        self.synonyms = options.get("synonyms", "coco2018")
        self._scorer: ChairScorer | None = None  # built on first use: NLTK data takes seconds to load
        self._gt: dict[int | str, set[str]] | None = None
        self._samples: list[dict[str, Any]] | None = None

    def prepare(self) -> None:
        self.scorer  # noqa: B018 - loads NLTK data now: a missing corpus is reported before generation

    @property
    def scorer(self) -> ChairScorer:
        if self._scorer is None:
            self._scorer = ChairScorer(self.synonyms, self.variant)
        return self._scorer

    def _image_ids(self) -> list[int | str]:
        if self.options.get("image_list"):
            ids = read_image_list(self.options["image_list"])
        elif self.options.get("image_root"):
            ids = read_image_list(DEFAULT_IMAGE_LIST)
        else:
            ids = sorted(load_gt(task_world(self.options).gt_objects_json), key=lambda i: (isinstance(i, str), i if isinstance(i, int) else 0, str(i)))
        n = self.options.get("n_images")
        return ids[: int(n)] if n else ids

    def _gt_source(self):
        explicit = self.options.get("gt") or self.options.get("coco_annotations")
        if explicit or self.options.get("image_root"):
            return explicit
        return task_world(self.options).gt_objects_json

    def samples(self) -> list[dict[str, Any]]:
        if self._samples is None:
            ids = self._image_ids()
            root = self.options.get("image_root")
            self._gt = load_gt(self._gt_source(), pipeline=self.variant, synonyms=self.synonyms, image_ids=ids)
            missing = [i for i in ids if i not in self._gt]
            if missing:
                raise DataError(f"{len(missing)} image(s) have no ground truth, e.g. {missing[:3]}",
                                path=self._gt_source() or "embedded world")
            world = None if root else task_world(self.options)
            self._samples = [
                {"id": str(i), "image_id": i,
                 "image": str(_coco_image(Path(root), i) if root else world.image_path(i))} for i in ids
            ]
        return self._samples

    def request(self, sample: dict[str, Any]) -> Request:
        gen = GenerationSettings(max_new_tokens=PROTOCOLS[self.protocol])
        return Request(id=sample["id"], prompt=PROMPT, image=sample["image"], generation=gen)

    def score(self, sample: dict[str, Any], response: Response) -> dict[str, Any]:
        if self._gt is None:
            self.samples()
        caption = response.text
        if PROTOCOLS[self.protocol] == 64:
            caption = truncate_incomplete(caption)
        return score_one(self.scorer, sample["image_id"], caption, self._gt[sample["image_id"]])

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return chair_metrics(records)

    def data_files(self) -> list[Path]:
        files = [SynonymTable.load(self.synonyms).path]
        if self.options.get("image_list") or self.options.get("image_root"):
            files.append(Path(self.options.get("image_list") or DEFAULT_IMAGE_LIST))
        src = self._gt_source()
        if src and Path(src).is_file():
            files += _part_files(Path(src))
        return files

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(protocol=self.protocol, synonyms=str(self.synonyms), prompt=PROMPT)
        return d

    @classmethod
    def score_predictions(cls, predictions, data=None, gt=None, coco_annotations=None, variant=None,
                          synonyms=None) -> dict[str, Any]:
        """Score a JSONL of {image_id, caption} without a model (`halbench score chair`)."""
        metrics, _ = score_caption_file(predictions, gt=gt or coco_annotations, pipeline=variant or "opera",
                                        synonyms=synonyms or "coco2018", image_list=data)
        return metrics


def score_one(scorer: ChairScorer, image_id, caption: str, gt: set[str]) -> dict[str, Any]:
    """A record; an empty caption is a counted skip (scoring it would read as 'no hallucination')."""
    if not caption.strip():
        empty = scorer.score_caption("", gt)
        return {"image_id": image_id, **empty, "caption": caption, "skipped": "empty caption"}
    return {"image_id": image_id, **scorer.score_caption(caption, gt)}


def read_predictions(path: str | Path) -> list[tuple[int, int | str, str]]:
    """(line, image_id, caption) from a JSONL/JSON-list file; the caption key is caption (or answer/text)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("predictions file not found", path=path)
    from halbench.textio import read_text

    text = read_text(path, "predictions file")
    if not text.strip():
        raise DataError("the predictions file is empty", path=path)
    try:
        rows = [(n, json.loads(l)) for n, l in enumerate(text.splitlines(), 1) if l.strip()]
    except json.JSONDecodeError as e:
        try:
            rows = [(n, r) for n, r in enumerate(json.loads(text), 1)]
        except json.JSONDecodeError:
            raise DataError(f"not JSONL nor a JSON list ({e.msg})", path=path) from e
    out = []
    for n, row in rows:
        key = next((k for k in ("caption", "answer", "text") if isinstance(row, dict) and k in row), None)
        if key is None or "image_id" not in row or not isinstance(row[key], (str, type(None))):
            raise DataError("expected an object with image_id and caption (string)", path=path, line=n)
        out.append((n, image_id_of(row["image_id"]), row[key] or ""))
    return out


def score_caption_file(predictions, *, gt=None, pipeline="opera", synonyms="coco2018", image_list=None):
    """(metrics, records) for a predictions file; bad input raises DataError naming file and line."""
    rows = read_predictions(predictions)
    seen: dict[Any, int] = {}
    for n, image_id, _ in rows:
        if image_id in seen:
            raise DataError(f"image_id {image_id} already on line {seen[image_id]}", path=predictions, line=n)
        seen[image_id] = n
    if image_list is not None:
        allowed = set(read_image_list(image_list))
        for n, image_id, _ in rows:
            if image_id not in allowed:
                raise DataError(f"image_id {image_id} is not in the image list {image_list}", path=predictions, line=n)
    gt_sets = load_gt(gt, pipeline=pipeline, synonyms=synonyms, image_ids=seen)
    for n, image_id, _ in rows:
        if image_id not in gt_sets:
            raise DataError(f"image_id {image_id} has no ground truth in {gt or 'the embedded world'}",
                            path=predictions, line=n)
    scorer = ChairScorer(synonyms, pipeline)
    records = [{"line": n, **score_one(scorer, i, c, gt_sets[i])} for n, i, c in rows]
    metrics = chair_metrics(records)
    metrics.update(variant=pipeline, synonyms=str(synonyms),
                   skipped=[{"line": r["line"], "reason": r["skipped"]} for r in records if r.get("skipped")][:50])
    return metrics, records
