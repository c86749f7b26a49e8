"""Object HalBench: object hallucination in detailed descriptions of 300 COCO val2014 images.

Source: Yu et al., RLHF-V (CVPR 2024, arXiv 2312.00849) and RLAIF-V (arXiv 2405.17220), after Rohrbach et al.
2018 (CHAIR); reference scorer RLHF-V/RLAIF-V eval/eval_gpt_obj_halbench.py + summarize_gpt_obj_halbench_review.py.
Data (`coco_root=DIR`, i.e. `--coco-root`: DIR/val2014 images, ground truth built from
DIR/annotations/{instances,captions}_val2014.json with the refined synonyms, cached): 300 (image_id, question)
pairs, 8 detailed-description prompts (tasks/data/objhal/, reconstructed from a
THUNLP exercise run; sha1 28e286bc2ba5; the official base64 file could not be fetched, so it is unverified that
these are the same 300 items). Images: `coco=DIR` of val2014 JPEGs (COCO_val2014_<12-digit id>.jpg or
<12-digit id>.jpg). Ground truth: `gt=` a COCO annotations folder (instances + captions, parsed with the refined
synonyms as the reference does) or a precomputed {image_id: [classes]} JSON. No `data`/`coco` option: the
embedded world (or `world=DIR`, a built world): `n` (300) of its images in a seeded order, the same 8 prompts in
turn, its instance ground truth (complete: the world has no unlabeled objects).

Extraction (`judge` option): `rule` (default) = the reference's fallback, CHAIR's pipeline (halbench.tasks.chair
ChairScorer, synonyms "objhal_refined"; note the reference fallback lemmatizes every token as a noun, CHAIR's
OPERA pipeline is POS-aware). An LLM judge (openai:MODEL@URL, hf:DIR) = the reference's GPT path: the judge lists
the objects an answer says are visible (halbench's wording of the reference instructions; JSON list reply),
then each phrase is mapped like the reference: "a <phrase>" is lemmatized; if it holds a double word
("dining table", "baby dog" -> dog, ...) those count, otherwise each run of nouns counts as one word; a word
counts when it is in the synonym list (so "car seat" counts as nothing). The reference tags with spaCy
(en_core_web_trf), halbench with NLTK's perceptron tagger (+ a phrase-head rule), so rare phrases may differ;
the reference sends its prompt as a system message, halbench as the user message. Answers of <= 3 words are
not sent (no objects, as in the reference). A failed or unparseable judge call is a judge failure (excluded,
counted in n_judge_failures), never "no objects". Temperature 0, cached, capped by max_judge_calls.

Metrics: response_hallucination_rate (↓) = hallucinated responses / responses mentioning >= 1 COCO object
(reference "Response Hall", CHAIRs_refine); response_hallucination_rate_all (↓) = over all responses (CHAIRs);
object_hallucination_rate (↓) = hallucinated mentions / mentions (CHAIRi); recall (↑) = covered GT classes / GT
classes, summed over responses; avg_len = mean space-separated words (reference avg_word_len).
Parity: with the rule extractor and CHAIR's `coco2018` list, the mentioned and hallucinated classes of each of
the first 100 exercise answers equal the official chair.py output, and all 300 give its CHAIRs 73/300, CHAIRi
87/1287, recall 593/954, refined 73/294 (tests/test_object_halbench.py; the full run via `halbench score`).
The LLM path's numbers depend on the judge and have not been compared with published GPT-3.5 results.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from halbench.errors import DataError, HalbenchError
from halbench.judges import JUDGE_GENERATION, Judge, JudgeRequest, judge_from_options
from halbench.schema import GenerationSettings, Metric, Request, Response
from halbench.task import Task

from halbench.tasks import chair_text
from halbench.tasks.chair import ChairScorer, chair_metrics, coco_gt, image_id_of, load_gt
from halbench.tasks.world_source import WORLD_WORDS

QUESTIONS_FILE = Path(__file__).resolve().parent / "data" / "objhal" / "objhal_300_questions_reconstructed.jsonl"
EXTRACT_PROMPT = """Someone looked at an image and answered a question about it. Assume the answer is correct. \
List the objects that the answer says are visible in the image.

Rules:
1. List only objects the answer explicitly mentions as present; skip anything it says is absent.
2. Give bare object names: no colors, materials, sizes, counts or other attributes.
3. Reply with a JSON list of strings, e.g. ["dog", "frisbee"], or [] when there are none.

Question: {question}

Answer: {answer}
"""
NOUN_TAGS = ("NN", "NNS", "NNP", "NNPS")
HEAD_TAGS = ("JJ", "VB", "RB")  # mis-tagged phrase heads (see phrase_words)
BOUNDARY_TAGS = ("IN", "CC", ",", "TO", ".")


@lru_cache(maxsize=None)
def refined_scorer(synonyms: str = "objhal_refined") -> ChairScorer:
    return ChairScorer(synonyms=synonyms, pipeline="opera")


# -- LLM-extraction path --------------------------------------------------------------------------------
def parse_object_list(text: str) -> tuple[list[str] | None, str | None]:
    """A ```json block, else the last [...] in the reply; it must be a JSON list of strings."""
    m = re.search(r"```(?:json)?\s*(\[.*?\])\s*```", text or "", re.S)
    candidates = [m.group(1)] if m else re.findall(r"\[[^\[\]]*\]", text or "")[-1:]
    if not candidates:
        return None, "no JSON list in the judge reply"
    try:
        items = json.loads(candidates[0])
    except json.JSONDecodeError as e:
        return None, f"the judge's list is not valid JSON ({e.msg})"
    if not all(isinstance(x, str) for x in items):
        return None, "the judge's list holds non-strings"
    return items, None


def phrase_words(phrase: str, scorer: ChairScorer) -> list[str]:
    """The reference's get_pred_objs_match for one phrase: double words if any, else the runs of nouns.

    The reference tags with spaCy; NLTK's tagger (used here) reads lone nouns such as "puppy" or "remote" as
    adjectives, so the word that ends the phrase or precedes a preposition/conjunction counts as a noun; and it
    reads some adjectives as nouns, so a run never starts with a word WordNet has no noun sense for ("wooden")."""
    tokens = chair_text.word_tokenize(f"a {phrase}".lower())
    lem = chair_text.opera_lemmatizer()
    lemmas, tags = lem.lemmatize(tokens), lem.tag(tokens)
    doubles = {**scorer.double, **{w: w for w in scorer.synonyms.inverse if " " in w.strip()}}
    found, i = [], 0
    while i < len(lemmas):
        pair = " ".join(lemmas[i:i + 2])
        if pair in doubles:
            found.append(doubles[pair])
            i += 2
        else:
            i += 1
    if found:
        return found
    runs, cur = [], []
    for i, (lemma, tag) in enumerate(zip(lemmas, tags)):
        head = tag[:2] in HEAD_TAGS and (i + 1 == len(tags) or tags[i + 1] in BOUNDARY_TAGS)
        if (tag in NOUN_TAGS and (cur or _has_noun_sense(lemma))) or head:
            cur.append(lemma)
        elif cur:
            runs.append(" ".join(cur))
            cur = []
    return runs + ([" ".join(cur)] if cur else [])


@lru_cache(maxsize=4096)
def _has_noun_sense(word: str) -> bool:
    from halbench.nltk_setup import register_bundled_data
    from nltk.corpus import wordnet

    register_bundled_data()
    return bool(wordnet.synsets(word, pos="n"))


def objects_to_mentions(objects: list[str], scorer: ChairScorer) -> list[tuple[str, str]]:
    """(word, class) per unique word from the extracted phrases that is in the synonym list."""
    words: list[str] = []
    for phrase in objects:
        for w in phrase_words(phrase, scorer):
            if w not in words:
                words.append(w)
    if "toilet" in words and "seat" in words:  # as the reference: the seat of a toilet is no chair
        words = [w for w in words if w != "seat"]
    inv = scorer.synonyms.inverse
    return [(w, inv[w]) for w in words if w in inv]


def record_from_mentions(caption: str, mentions: list[tuple[str, str]], gt: set[str], scorer: ChairScorer) -> dict:
    """A record with CHAIR's fields (ChairScorer.score_caption's shape) for judge-extracted mentions."""
    halluc = [(w, c) for w, c in mentions if c not in gt]
    correct = [c for _, c in mentions if c in gt]
    covered = sorted(set(correct))
    return {
        "caption": caption, "mentioned": [c for _, c in mentions], "words": [w for w, _ in mentions],
        "hallucinated": [c for _, c in halluc], "hallucinated_words": [w for w, _ in halluc],
        "correct_mentions": correct, "gt_objects": sorted(gt), "covered_gt_objects": covered,
        "n_words": len(scorer.analyze(caption).words), "n_mentions": len(mentions), "n_hallucinated": len(halluc),
        "n_gt_objects": len(gt), "n_covered_gt_objects": len(covered),
    }


def objhal_metrics(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The reference's overall metrics from per-response records; judge failures are counted, not scored."""
    scored = [r for r in records if r.get("error") is None and not r.get("judge_error")]
    c = chair_metrics(scored)
    lens = [len(r["caption"].strip().split(" ")) for r in scored]
    return {
        "response_hallucination_rate": c["chair_s_refine"], "response_hallucination_rate_all": c["chair_s"],
        "object_hallucination_rate": c["chair_i"], "recall": c["recall"],
        "avg_len": sum(lens) / len(lens) if lens else None,
        "n_with_objects": c["n_captions_with_mentions"], "n_hallucinated_responses": c["n_hallucinated_captions"],
        "n_mentions": c["n_mentions"], "n_hallucinated_mentions": c["n_hallucinated_mentions"],
        "n_gt_objects": c["n_gt_objects"], "n_covered_gt_objects": c["n_covered_gt_objects"],
        "n_samples": len(records), "n_errors": sum(r.get("error") is not None for r in records),
        "n_judge_failures": sum(r.get("error") is None and bool(r.get("judge_error")) for r in records),
    }


def read_questions(path: str | Path) -> list[dict[str, Any]]:
    """JSONL rows with image_id and question (the reconstructed 300-prompt file's format)."""
    from halbench.textio import read_text

    p, rows = Path(path), []
    lines = read_text(p, "questions file").splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rows.append({"image_id": image_id_of(row["image_id"]), "question": str(row["question"])})
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DataError(f"expected a JSON object with image_id and question ({e})", path=p, line=n) from e
    return rows


class ObjectHalBenchTask(Task):
    name = "object_halbench"
    data_roots = ("coco",)  # --coco-root DIR reaches this task as option coco_root
    uses_judge = True
    variants = {"default": "300 detailed-description prompts; rule (CHAIR) or LLM-judge object extraction"}
    metrics = (
        Metric("response_hallucination_rate", "lower", "hallucinated / responses with >= 1 COCO object (official)"),
        Metric("response_hallucination_rate_all", "lower", "hallucinated / all responses (CHAIRs)"),
        Metric("object_hallucination_rate", "lower", "hallucinated / all object mentions (CHAIRi)"),
        Metric("recall", "higher", "GT objects mentioned / GT objects"),
        Metric("avg_len", "none", "mean words per response"),
        Metric("n_judge_failures", "lower", "responses the judge failed to read (not scored)"),
    )
    version = "1"

    def __init__(self, variant: str | None = None, **options: Any):
        super().__init__(variant, **options)
        self._root = None
        if options.get("coco_root"):  # --coco-root: DIR/val2014 + GT from its val2014 annotations (cached)
            from halbench.tasks.data_roots import CocoRoot

            self._root = CocoRoot.open(options["coco_root"])
            self._root.require_images()
            if not options.get("gt"):
                self._root.require_annotations()
        self.world_mode = not (options.get("data") or options.get("coco") or self._root)
        if not self.world_mode and not self._root and not (options.get("coco") and options.get("gt")):
            raise HalbenchError("object_halbench on COCO needs coco=DIR (val2014 images) and gt=PATH (COCO "
                                "annotations folder or {image_id: [objects]} JSON)")
        self.extraction = "rule" if str(options.get("judge") or "rule") == "rule" else "judge"
        self.scorer = refined_scorer(str(options.get("synonyms") or "objhal_refined"))
        self._samples: list[dict[str, Any]] | None = None
        self._gt: dict[Any, set[str]] | None = None
        self._judge: Judge | None = None

    # -- samples ------------------------------------------------------------------------------------------
    def uses_world(self) -> bool:
        return self.world_mode

    def data_files(self) -> list[Path]:
        if self.world_mode:
            return []
        own_gt = self._root is not None and not self.options.get("gt")
        extra = [self._root.instances_val, self._root.captions_val] if own_gt else []
        return [Path(self.options.get("data") or QUESTIONS_FILE), *extra]

    def data_source(self) -> str:
        """The data in words, for results.json and the report header."""
        n = f"{len(self.samples()):,} prompts"
        if self.world_mode:
            return f"{WORLD_WORDS} ({self.world().root}), {n} (the 8 Object HalBench prompts in turn)"
        images = self._root.root if self._root else self.options["coco"]
        gt = self.options.get("gt") or "instances + captions_val2014"
        questions = self.data_files()[0].name
        return f"COCO val2014 ({images}), Object HalBench questions {questions}, {n}, ground truth {gt}"

    def samples(self) -> list[dict[str, Any]]:
        if self._samples is None:
            self._samples = self._world_samples() if self.world_mode else self._coco_samples()
        return self._samples

    def _coco_samples(self) -> list[dict[str, Any]]:
        coco = Path(str(self.options["coco"])).expanduser() if self.options.get("coco") else self._root.val2014
        out = []
        for i, row in enumerate(read_questions(self.options.get("data") or QUESTIONS_FILE)):
            iid = row["image_id"]
            names = [f"COCO_val2014_{iid:012d}.jpg", f"{iid:012d}.jpg"] if isinstance(iid, int) else [str(iid)]
            path = next((coco / n for n in names if (coco / n).is_file()), coco / names[0])
            out.append({"id": f"objhal_{i:03d}", "image_id": iid, "question": row["question"], "image": str(path)})
        return out

    def world(self):
        from halbench.tasks.world_source import task_world

        return task_world(self.options)

    def _world_samples(self) -> list[dict[str, Any]]:
        import numpy as np

        world = self.world()
        ids = sorted(image_id_of(k) for k in json.loads(Path(world.gt_objects_json).read_text()))
        rng = np.random.default_rng(int(self.options.get("seed", 0)))
        ids = [ids[i] for i in rng.permutation(len(ids))[: int(self.options.get("n", 300))]]
        prompts = list(dict.fromkeys(r["question"] for r in read_questions(QUESTIONS_FILE)))
        return [{"id": f"world_objhal_{i:03d}", "image_id": iid, "question": prompts[i % len(prompts)],
                 "image": str(world.image_path(iid))} for i, iid in enumerate(ids)]

    def gt(self) -> dict[Any, set[str]]:
        if self._gt is None:
            ids = [s["image_id"] for s in self.samples()]
            if self._root is not None and not self.options.get("gt"):
                self._gt = coco_gt(self._root.instances_val, self._root.captions_val, self.scorer, ids)
                return self._gt
            source = self.world().gt_objects_json if self.world_mode else self.options["gt"]
            self._gt = load_gt(source, synonyms=self.scorer.synonyms.path, image_ids=ids)
        return self._gt

    def _gt_of(self, image_id: Any) -> set[str]:
        gt = self.gt()
        if image_id not in gt:
            raise DataError(f"no ground-truth objects for image {image_id}", path=self.options.get("gt") or "world")
        return gt[image_id]

    def request(self, sample: dict[str, Any]) -> Request:
        gen = GenerationSettings(max_new_tokens=int(self.options.get("max_new_tokens",
                                                                     128 if self.world_mode else 512)))
        return Request(id=sample["id"], prompt=sample["question"], image=sample["image"], generation=gen)

    # -- scoring ------------------------------------------------------------------------------------------
    @property
    def judge(self) -> Judge:
        if self._judge is None:
            self._judge = judge_from_options(self.options)
        return self._judge

    def score(self, sample: dict[str, Any], response: Response) -> dict[str, Any]:
        return self.score_batch([sample], [response])[0]

    def score_batch(self, samples: list[dict[str, Any]], responses: list[Response]) -> list[dict[str, Any]]:
        if self.extraction == "rule":
            return [{"image_id": s["image_id"], "extraction": "rule",
                     **self.scorer.score_caption(r.text, self._gt_of(s["image_id"]))}
                    for s, r in zip(samples, responses)]
        out: list[dict[str, Any] | None] = [None] * len(samples)
        asked = []
        for i, (s, r) in enumerate(zip(samples, responses)):
            if len(r.text.strip().split()) <= 3:  # the reference skips short answers: no objects
                out[i] = self._judged(s, r.text, [], None)
            else:
                asked.append(i)
        requests = [JudgeRequest(id=samples[i]["id"], generation=JUDGE_GENERATION,
                                 prompt=EXTRACT_PROMPT.format(question=samples[i]["question"],
                                                              answer=responses[i].text)) for i in asked]
        for i, v in zip(asked, self.judge.judge(requests, parse_object_list)):
            out[i] = self._judged(samples[i], responses[i].text, v.value, v)
        return out  # type: ignore[return-value]

    def _judged(self, sample: dict[str, Any], caption: str, objects: list[str] | None, v) -> dict[str, Any]:
        judge = {"extraction": "judge", "extracted_objects": objects, "judge_text": v.text if v else None,
                 "judge_model": (v.model_id if v else None) or self.judge.judge_id,
                 "judge_error": v.error if v else None, "judge_cached": bool(v and v.cached)}
        if v is not None and not v.ok:
            return {"image_id": sample["image_id"], "caption": caption, **judge}
        mentions = objects_to_mentions(objects or [], self.scorer)
        return {"image_id": sample["image_id"], **record_from_mentions(caption, mentions,
                                                                        self._gt_of(sample["image_id"]),
                                                                        self.scorer), **judge}

    def needs_rescore(self, record: dict[str, Any]) -> bool:
        """A stored answer whose judge extraction failed: a re-run asks the judge again (good verdicts stay)."""
        return record.get("error") is None and bool(record.get("judge_error"))

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        metrics = objhal_metrics(records)
        if self._judge is not None:
            metrics.update(self._judge.stats.as_metrics(self._judge.price))
        return metrics

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["extraction"] = self.extraction
        if self.extraction == "judge":
            d["judge"] = self._judge.describe() if self._judge else {"judge": str(self.options.get("judge"))}
        return d

    # -- `halbench score object_halbench --predictions F` -------------------------------------------------
    @classmethod
    def score_predictions(cls, predictions: str, gt: str | None = None, coco_annotations: str | None = None,
                          synonyms: str | None = None, **_: Any) -> dict[str, Any]:
        """Rule-extraction metrics of a JSONL of answers (image_id + answer/caption/text per line)."""
        scorer = refined_scorer(synonyms or "objhal_refined")
        from halbench.textio import jsonl_objects

        rows = []
        for n, row in jsonl_objects(predictions, "predictions file"):
            text = next((row[k] for k in ("answer", "caption", "text") if k in row), None)
            if not isinstance(text, str) or "image_id" not in row:
                raise DataError("expected image_id and answer/caption/text", path=predictions, line=n)
            rows.append((image_id_of(row["image_id"]), text.replace("Assistant:", "").strip()))
        if not rows:
            raise DataError("the predictions file has no answers", path=predictions)
        source = coco_annotations or gt
        if source is None:
            raise HalbenchError("give --gt or --coco-annotations for object_halbench")
        gts = load_gt(source, synonyms=scorer.synonyms.path, image_ids=[i for i, _ in rows])
        missing = [i for i, _ in rows if i not in gts]
        if missing:
            raise DataError(f"no ground truth for {len(missing)} images (e.g. {missing[0]})", path=source)
        return objhal_metrics([{"error": None, **scorer.score_caption(t, gts[i])} for i, t in rows])
