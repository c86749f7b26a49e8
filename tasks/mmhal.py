"""MMHal-Bench: 96 open-ended questions on OpenImages pictures, rated 0-6 by a judge.

Source: Sun et al. 2023, "Aligning Large Multimodal Models with Factually Augmented RLHF" (LLaVA-RLHF),
arXiv 2309.14525; reference scorer llava-rlhf/LLaVA-RLHF Eval/eval_gpt_mmhal.py (GPT-4-0314 judge).
Data: the 96-item template (RLHF-V/RLAIF-V eval/data/mmhal-bench_answer_template.json, sha1 1fbb4071fe57;
packaged as tasks/data/mmhal/, `data=official`) or any file of the same schema (question_type, question_topic,
image_id, image_src, image_content, question, gt_answer). Images: `images=DIR` holding the HF dataset's
images/ folder (file = basename of image_src) or `{image_id}.jpg`; an item's own `image_path` wins.
`mmhal_root=DIR` (`--mmhal-root`): a copy of the dataset repository, DIR/images/ + DIR/response_template.json
(the packaged template when absent); `data=hf:ID` a Hugging Face copy (halbench.tasks.hf_datasets).
With no `data` option the task runs `n` (96) MMHal-style questions on the embedded world (or `world=DIR`),
rated by default by the offline rule judge (tasks/world_mmhal.py says what it can and cannot measure).

Prompt to the model: the question (plus `prompt_suffix`, default none), one image, greedy, max_new_tokens 1024
(world: 128). Judge (`judge=openai:MODEL@URL | hf:DIR | rule`): tasks/data/mmhal/judge_prompt.txt, halbench's
own wording of the reference instructions (image labels, question, human answer, response; 0-6 scale;
"Rating: N"); `judge_prompt=FILE` swaps in another template, e.g. the reference one for parity.
`judge_image=true` sends the image too (MMHal-V idea, BDHS study). Temperature 0, cached, capped
(max_judge_calls); a failed or unparseable judge call is a judge failure (rating null), never a score.

Variants: `strict` (default): tolerant-but-unambiguous rating parse, per-type scores grouped by each item's
question_type. `official`: the reference parse (substring 'rating: s', else 0) and per-type grouping by
index % 8 over file order, exactly as eval_gpt_mmhal.py; on the official file both groupings agree
(tests/test_mmhal.py). Metrics: avg_score (↑, mean rating 0-6), hallucination_rate (↓, share of ratings < 3),
score_<type> (↑), counts. Parity: parsing reproduces refdata/mmhal/judge_parsing_cases.jsonl row for row;
ratings depend on the judge and prompt and have not been compared with published GPT-4 numbers.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from halbench.errors import DataError, HalbenchError
from halbench.judges import JUDGE_GENERATION, Judge, JudgeRequest, judge_from_options
from halbench.schema import GenerationSettings, Metric, Request, Response
from halbench.task import Task
from halbench.tasks.world_source import WORLD_WORDS

DATA_DIR = Path(__file__).resolve().parent / "data" / "mmhal"
OFFICIAL_FILE = DATA_DIR / "mmhal-bench_answer_template.json"
PROMPT_FILE = DATA_DIR / "judge_prompt.txt"
#: The reference scorer's type order: type = TYPES[index % 8] over the file's order.
TYPES = ("attribute", "adversarial", "comparison", "counting", "relation", "environment", "holistic", "other")
REQUIRED = ("question_type", "question_topic", "image_id", "question", "gt_answer")
_INTRO = {
    False: "You will grade one answer that a large multimodal model (LMM) gave to a question about an image. "
           "You cannot see the image; you are given the labels of what it contains, the question, and a "
           "correct answer written by a person.",
    True: "You will grade one answer that a large multimodal model (LMM) gave to a question about the attached "
          "image. Look at the image; you are also given labels of what it contains, the question, and a "
          "correct answer written by a person.",
}


# -- ratings ------------------------------------------------------------------------------------------------
def official_ratings_found(text: str) -> list[int]:
    """The distinct s in 0..6 with 'rating: s' in the lowercased reply, ascending (reference rule)."""
    low = (text or "").lower()
    return [s for s in range(7) if f"rating: {s}" in low]


def parse_official(text: str) -> tuple[int, bool]:
    """(score, warning): exactly one rating found -> it, else 0 with warning (what eval_gpt_mmhal.py does)."""
    found = official_ratings_found(text)
    return (found[0], False) if len(found) == 1 else (0, True)


_STRICT = re.compile(r"\brating\s*[:=\-\u2013\u2014]?[\s*_]*[:=\-\u2013\u2014]?[\s*_]*(\d+(?:\.\d+)?)", re.I)


def parse_strict(text: str) -> tuple[int | None, str | None]:
    """(rating, None) when every 'Rating: N' (markdown and ':'/'-' tolerated) gives the same integer in 0..6;
    else (None, reason). "**Rating:** 5" -> 5; none, two different, 10 or 3.5 -> a failure, never 0."""
    found = [m.group(1) for m in _STRICT.finditer(text or "")]
    if not found:
        return None, "no 'Rating: N' in the judge reply"
    values = {float(v) for v in found}
    if len(values) > 1:
        return None, f"the judge reply gives different ratings ({', '.join(dict.fromkeys(found))})"
    value = values.pop()
    if value != int(value) or not 0 <= value <= 6:
        return None, f"rating {found[0]} is not an integer in 0..6"
    return int(value), None


def parser_for(variant: str):
    """text -> (rating, error) for judge.judge(); `official` never fails (it scores 0 instead)."""
    return (lambda text: (parse_official(text)[0], None)) if variant == "official" else parse_strict


# -- prompt -------------------------------------------------------------------------------------------------
def load_template(path: str | Path) -> str:
    p = Path(path)
    from halbench.textio import read_text

    text = read_text(p, "judge prompt template")
    named = all(f"{{{k}}}" in text for k in ("image_content", "question", "gt_answer", "response"))
    if not named and text.count("{}") != 4:
        raise DataError("a judge prompt template needs {image_content} {question} {gt_answer} {response} "
                        "or exactly four positional {}", path=p)
    return text


def render_prompt(item: dict, response: str, template: str, image_aware: bool = False) -> str:
    """Fill a template in one pass (braces inside a response are left alone)."""
    fields = {"intro": _INTRO[image_aware], "image_content": ", ".join(item.get("image_content") or []),
              "question": item["question"], "gt_answer": item["gt_answer"], "response": response}
    if "{image_content}" in template:
        return re.sub(r"\{(intro|image_content|question|gt_answer|response)\}", lambda m: fields[m.group(1)],
                      template)
    parts = template.split("{}")
    values = [fields["image_content"], fields["question"], fields["gt_answer"], response]
    return "".join(p + (values[i] if i < 4 else "") for i, p in enumerate(parts))


# -- data ---------------------------------------------------------------------------------------------------
def load_mmhal(path: str | Path) -> list[dict[str, Any]]:
    """The items of an MMHal-Bench JSON list, checked; DataError names the file and the item."""
    p = Path(path)
    from halbench.textio import read_json

    items = read_json(p, "MMHal-Bench JSON")
    if not isinstance(items, list) or not items:
        raise DataError("expected a non-empty JSON list of MMHal-Bench items", path=p)
    for i, it in enumerate(items):
        missing = [k for k in REQUIRED if not isinstance(it, dict) or k not in it]
        if missing:
            raise DataError(f"item {i} lacks {', '.join(missing)}", path=p)
    return items


def resolve_image(item: dict, images: Path, data_dir: Path) -> Path:
    """item image_path (relative to the data file) > images/<basename of image_src> > images/<image_id>.jpg."""
    candidates = []
    if item.get("image_path"):
        candidates.append(data_dir / item["image_path"])
    if item.get("image_src"):
        candidates.append(images / str(item["image_src"]).rsplit("/", 1)[-1])
    candidates += [images / f"{item['image_id']}{ext}" for ext in (".jpg", ".jpeg", ".png")]
    for c in candidates:
        if c.is_file():
            return c
    raise DataError(f"image of MMHal item {item['image_id']!r} not found (tried {', '.join(map(str, candidates))})",
                    path=images)


def mmhal_metrics(records: list[dict[str, Any]], variant: str, by_index: bool | None = None) -> dict[str, Any]:
    """avg_score, hallucination_rate, score_<type> over judged records; failures are counted, not scored.
    Per-type grouping: TYPES[index % 8] when `by_index` (default: the official variant), else question_type."""
    by_index = variant == "official" if by_index is None else by_index
    answered = [r for r in records if r.get("error") is None]
    judged = [r for r in answered if r.get("rating") is not None]
    by_type: dict[str, list[int]] = defaultdict(list)
    for r in judged:
        key = TYPES[r["index"] % 8] if by_index else r["question_type"]
        by_type[key].append(r["rating"])
    ratings = [r["rating"] for r in judged]
    m: dict[str, Any] = {
        "avg_score": sum(ratings) / len(ratings) if ratings else None,  # no valid verdict: null, never NaN
        "hallucination_rate": sum(x < 3 for x in ratings) / len(ratings) if ratings else None,
        **{f"score_{t}": sum(v) / len(v) for t, v in sorted(by_type.items())},
        "n_samples": len(records), "n_errors": len(records) - len(answered), "n_judged": len(judged),
        "n_judge_failures": len(answered) - len(judged),
        "n_rating_warnings": sum(bool(r.get("rating_warning")) for r in judged),
    }
    if by_index:
        m["n_type_order_mismatch"] = sum(TYPES[r["index"] % 8] != r["question_type"] for r in records)
    return m


class MMHalTask(Task):
    name = "mmhal"
    data_roots = ("mmhal",)  # --mmhal-root DIR reaches this task as option mmhal_root
    uses_judge = True
    variants = {
        "strict": "unambiguous 'Rating: N' or a judge failure; per-type by question_type",
        "official": "eval_gpt_mmhal.py: substring 'rating: s' else 0; per-type by index % 8",
    }
    metrics = (
        Metric("avg_score", "higher", "mean judge rating (0-6)"),
        Metric("hallucination_rate", "lower", "share of judged answers rated < 3"),
        *(Metric(f"score_{t}", "higher", f"mean rating, {t} questions") for t in TYPES + ("existence",)),
        Metric("n_judge_failures", "lower", "answers the judge failed to rate (not scored)"),
    )
    version = "1"

    def __init__(self, variant: str | None = None, **options: Any):
        super().__init__(variant, **options)
        self._root = None
        if options.get("mmhal_root"):  # --mmhal-root: DIR/images + DIR/response_template.json (else packaged)
            from halbench.tasks.data_roots import MMHalRoot

            self._root = MMHalRoot.open(options["mmhal_root"])
            self._root.require_images()
        self.world_mode = not (options.get("data") or self._root)
        if not self.world_mode and str(options.get("judge") or "rule") == "rule":
            raise HalbenchError("MMHal-Bench needs an LLM judge: pass --judge openai:MODEL@URL or --judge hf:DIR "
                                "(the rule judge only rates the embedded world's templated questions)")
        self.template = load_template(options.get("judge_prompt") or PROMPT_FILE)
        self._judge: Judge | None = None
        self._samples: list[dict[str, Any]] | None = None

    # -- samples ------------------------------------------------------------------------------------------
    def data_files(self) -> list[Path]:
        from halbench.tasks.hf_datasets import hf_id

        files = [] if self.world_mode or hf_id(self.options.get("data")) else [self._data_path()]
        return files + [Path(self.options.get("judge_prompt") or PROMPT_FILE)]

    def _data_path(self) -> Path:
        if not self.options.get("data"):
            return self._root.template
        data = str(self.options["data"])
        return OFFICIAL_FILE if data == "official" else Path(data).expanduser()

    def uses_world(self) -> bool:
        return self.world_mode

    def data_source(self) -> str:
        """The data in words, for results.json and the report header."""
        from halbench.tasks.hf_datasets import describe_hf, hf_id

        n = f"{len(self.samples()):,} questions"
        if self.world_mode:
            return f"{WORLD_WORDS}, MMHal-style templated questions, {n}"
        if hf_id(self.options.get("data")):
            return f"Hugging Face dataset {describe_hf(self.options)}, MMHal-Bench, {n}"
        return f"MMHal-Bench {self._data_path().name}, images {self._images_dir()}, {n}"

    def _images_dir(self) -> Path:
        if self.options.get("images"):
            return Path(str(self.options["images"])).expanduser()
        return self._root.root / "images" if self._root else self._data_path().parent / "images"

    def samples(self) -> list[dict[str, Any]]:
        if self._samples is None:
            self._samples = self._world_samples() if self.world_mode else self._file_samples()
        return self._samples

    def _file_samples(self) -> list[dict[str, Any]]:
        from halbench.tasks.hf_datasets import hf_id, mmhal_items

        o = self.options
        hf = hf_id(o.get("data"))
        path = None if hf else self._data_path()
        data_dir = path.parent if path else Path(".")
        images = self._images_dir() if path else Path(".")
        items = mmhal_items(hf, o.get("hf_config"), o.get("hf_split"), o.get("hf_revision")) if hf else load_mmhal(path)
        out = []
        for i, it in enumerate(items):
            out.append({"id": f"mmhal_{i:03d}", "index": i, **{k: it[k] for k in REQUIRED},
                        "image_content": list(it.get("image_content") or []),
                        "image": str(resolve_image(it, images, data_dir))})
        return out

    def _world_samples(self) -> list[dict[str, Any]]:
        from halbench.tasks.world_mmhal import world_samples
        from halbench.world import World

        world = World(Path(str(self.options["world"])).expanduser()) if self.options.get("world") else None
        return world_samples(n=int(self.options.get("n", 96)), seed=int(self.options.get("seed", 0)), world=world)

    def request(self, sample: dict[str, Any]) -> Request:
        default = 128 if self.world_mode else 1024
        gen = GenerationSettings(max_new_tokens=int(self.options.get("max_new_tokens", default)))
        prompt = sample["question"] + str(self.options.get("prompt_suffix") or "")
        return Request(id=sample["id"], prompt=prompt, image=sample["image"], generation=gen)

    # -- judging ------------------------------------------------------------------------------------------
    @property
    def judge(self) -> Judge:
        if self._judge is None:
            from halbench.tasks.world_mmhal import RULE_VERSION, rule_verdict

            self._judge = judge_from_options(self.options, rule=rule_verdict, rule_name="mmhal-world",
                                             rule_version=RULE_VERSION)
        return self._judge

    def judge_request(self, sample: dict[str, Any], response: str) -> JudgeRequest:
        image_aware = "image" in self.judge.capabilities
        return JudgeRequest(
            id=sample["id"], prompt=render_prompt(sample, response, self.template, image_aware),
            image=sample["image"] if image_aware else None, generation=JUDGE_GENERATION,
            fields={"sample": sample, "response": response},
        )

    def score_batch(self, samples: list[dict[str, Any]], responses: list[Response]) -> list[dict[str, Any]]:
        requests = [self.judge_request(s, r.text) for s, r in zip(samples, responses)]
        verdicts = self.judge.judge(requests, parser_for(self.variant))
        return [self._record(s, v) for s, v in zip(samples, verdicts)]

    def score(self, sample: dict[str, Any], response: Response) -> dict[str, Any]:
        return self.score_batch([sample], [response])[0]

    def needs_rescore(self, record: dict[str, Any]) -> bool:
        """A stored answer whose verdict failed (judge error, unparseable, capped): a re-run asks again."""
        return record.get("error") is None and record.get("judge_error") is not None

    def _record(self, sample: dict[str, Any], v) -> dict[str, Any]:
        rating = v.value if v.ok else None
        rec = {"index": sample["index"], "image_id": sample["image_id"], "question_type": sample["question_type"],
               "question_topic": sample["question_topic"], "rating": rating,
               "hallucination": None if rating is None else rating < 3, "judge_text": v.text,
               "judge_model": v.model_id or self.judge.judge_id, "judge_error": v.error, "judge_cached": v.cached}
        if self.variant == "official" and v.ok:
            rec["rating_warning"] = parse_official(v.text)[1]
        return rec

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        # the world's questions do not follow the official 8-type cycle: group them by question_type
        metrics = mmhal_metrics(records, self.variant, by_index=self.variant == "official" and not self.world_mode)
        if self._judge is not None:  # this process's calls (a fully resumed run made none)
            metrics.update(self._judge.stats.as_metrics(self._judge.price))
        return metrics

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["judge"] = self._judge.describe() if self._judge else {"judge": str(self.options.get("judge") or "rule")}
        return d
