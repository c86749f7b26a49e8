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
  images sampled with seed 0 by yuezih/less-is-more) unless `image_list` names another file or a packaged
  list: `less-is-more`, or `opera` (chair500_opera.txt: the 500 val2014 images of OPERA's released LLaVA-1.5,
  Shikra and MiniGPT-4 logs; OPERA's chair_eval.py shuffles os.listdir, so the logs are the only record).
  `coco_root=DIR` (`--coco-root`): DIR/val2014 images, ground truth built from
  DIR/annotations/{instances,captions}_val2014.json with this task's pipeline and synonyms, cached under the
  user cache dir keyed by the files' sha256 (chair_gt.coco_gt). `image_root=DIR` needs `gt=` (before, it fell
  back to the world's ground truth). Protocol `opera` (halbench.tasks.protocols): the opera list, 512 tokens.
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
from pathlib import Path
from typing import Any

from halbench.errors import DataError, HalbenchError
from halbench.schema import GenerationSettings, Metric, Request, Response
from halbench.task import Task

from halbench.tasks.world_source import WORLD_WORDS, task_world

from halbench.tasks import chair_text  # noqa: F401 (public: halbench.tasks.chair.chair_text)
from halbench.tasks.chair_text import DATA_DIR, SYNONYM_FILES, SynonymTable, double_word_dict  # noqa: F401 (public)
# The scorer and the ground truth live in their own modules; their names stay importable from here.
from halbench.tasks.chair_scorer import PIPELINES, Analysis, ChairScorer, Mention, chair_metrics  # noqa: F401
from halbench.tasks.chair_gt import (_gt_from_coco, _part_files, _read_gt_json, coco_gt,  # noqa: F401
                                     gt_from_coco_files, image_id_of, load_gt)


# ---------------------------------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------------------------------
PROMPT = "Please describe this image in detail."
PROTOCOLS = {"chair500-512": 512, "chair-64": 64, "chair500-64": 64}
DEFAULT_IMAGE_LIST = DATA_DIR / "chair500_less_is_more.jsonl"
#: packaged image lists (tasks/data/ATTRIBUTION.md); option image_list takes a name or a path
IMAGE_LISTS = {"less-is-more": DEFAULT_IMAGE_LIST, "opera": DATA_DIR / "chair500_opera.txt"}


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
    """The first existing of COCO_val2014_<id>.jpg, <id>.jpg, <id>; else the official name (the evaluator
    checks the images of the samples it runs, so --limit 4 needs 4 images, not the whole list)."""
    names = [f"COCO_val2014_{image_id:012d}.jpg", f"{image_id:012d}.jpg"] if isinstance(image_id, int) else []
    from halbench.images import image_under

    for name in names + [str(image_id)]:
        if image_under(root, name).is_file():
            return root / name
    return root / (names + [str(image_id)])[0]


class ChairTask(Task):
    """CHAIR on captions generated for a fixed image list (see the module card)."""

    name = "chair"
    data_roots = ("coco",)  # --coco-root DIR reaches this task as option coco_root
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
        self._coco = None
        if options.get("coco_root"):  # --coco-root: DIR/val2014 images + GT built from its val2014 annotations
            from halbench.tasks.data_roots import CocoRoot

            self._coco = CocoRoot.open(options["coco_root"])
            self._coco.require_images()
            if not self._explicit_gt():
                self._coco.require_annotations()
        elif options.get("image_root") and not self._explicit_gt():
            raise HalbenchError("chair with image_root=DIR needs gt= (a {image_id: [objects]} JSON or a COCO "
                                "annotations folder); or pass --coco-root DIR for images + annotations")

    def _explicit_gt(self):
        return self.options.get("gt") or self.options.get("coco_annotations")

    def uses_world(self) -> bool:
        """True when no images are configured: images and ground truth come from the embedded world."""
        return not (self.options.get("image_root") or self._coco)

    def _image_root(self) -> Path | None:
        root = self.options.get("image_root")
        return Path(str(root)) if root else (self._coco.val2014 if self._coco else None)

    def _image_list(self) -> Path | None:
        value = self.options.get("image_list")
        if value:
            return IMAGE_LISTS.get(str(value), Path(str(value)))
        return None if self.uses_world() else DEFAULT_IMAGE_LIST

    def prepare(self) -> None:
        self.scorer  # noqa: B018 - loads NLTK data now: a missing corpus is reported before generation

    @property
    def scorer(self) -> ChairScorer:
        if self._scorer is None:
            self._scorer = ChairScorer(self.synonyms, self.variant)
        return self._scorer

    def _image_ids(self) -> list[int | str]:
        if self._image_list() is not None:
            ids = read_image_list(self._image_list())
        else:
            ids = sorted(load_gt(task_world(self.options).gt_objects_json), key=lambda i: (isinstance(i, str), i if isinstance(i, int) else 0, str(i)))
        n = self.options.get("n_images")
        return ids[: int(n)] if n else ids

    def _gt_source(self):
        if self._explicit_gt():
            return self._explicit_gt()
        if self._coco is not None:
            return self._coco.instances_val.parent
        return task_world(self.options).gt_objects_json

    def _load_gt(self, ids: list[int | str]) -> dict[int | str, set[str]]:
        if self._coco is not None and not self._explicit_gt():  # built once per image, cached (chair_gt.coco_gt)
            return coco_gt(self._coco.instances_val, self._coco.captions_val, self.scorer, ids)
        return load_gt(self._gt_source(), pipeline=self.variant, synonyms=self.synonyms, image_ids=ids)

    def samples(self) -> list[dict[str, Any]]:
        if self._samples is None:
            ids = self._image_ids()
            root = self._image_root()
            self._gt = self._load_gt(ids)
            missing = [i for i in ids if i not in self._gt]
            if missing:
                raise DataError(f"{len(missing)} image(s) have no ground truth, e.g. {missing[:3]}",
                                path=self._gt_source())
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
        if self._image_list() is not None:
            files.append(self._image_list())
        src = self._gt_source()
        if self._coco is not None and not self._explicit_gt():
            files += [self._coco.instances_val, self._coco.captions_val]
        elif src and Path(src).is_file():
            files += _part_files(Path(src))
        return files

    def data_source(self) -> str:
        """The data in words, for results.json and the report header."""
        n = f"{len(self.samples()):,} images"
        if self.uses_world():
            return f"{WORLD_WORDS} ({task_world(self.options).root}), {n}, instance ground truth"
        lists = {v: k for k, v in IMAGE_LISTS.items()}
        listed = lists.get(self._image_list(), str(self._image_list()))
        if self._coco is not None and not self._explicit_gt():
            return (f"COCO val2014 ({self._coco.root}), CHAIR {listed} image list, {n}, ground truth from "
                    f"instances + captions_val2014 ({self.variant} pipeline)")
        return f"images {self._image_root()}, CHAIR {listed} image list, {n}, ground truth {self._gt_source()}"

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
