"""Reward analyses: do CLIP rewards track caption quality, and which granularity sees hallucinations?

Card
- Source: FiSAO (Cui et al., arXiv 2410.14148, ICLR 2025), Figures 1, 2 and 4: sentence-level CLIP rewards
  correlate weakly with BLEU/ROUGE; token-level rewards separate hallucinated from correct objects where
  sentence-level rewards do not; training shifts the object-reward distribution. The paper's analysis code is
  not public (github.com/gzcch/FISAO_ICLR holds only a README), so every choice below is ours; parity with
  the paper's figures is NOT claimed, only the analyses' definitions.
- Data: images with ground-truth object sets (for CHAIR labels) and optional reference captions (for
  analysis 1). Default: the embedded world's validation images, gt_objects.json and captions json.
- Prompt: "Please describe this image in detail." (the CHAIR prompt of OPERA / less-is-more), greedy.
- Rewards: halbench.clip_scorer.ClipScorer (cosine similarity); an object mention is scored as the CLIP
  prompt "a photo of a {mention}." (option phrase_template). Object mentions and hallucinated/correct
  labels: halbench.tasks.chair.ChairScorer (same pipeline as the chair task; a mention is hallucinated when
  its COCO class is not in the image's ground-truth set).
- Analysis 1 (correlation): per caption, sentence reward vs BLEU-1..4 and ROUGE-L against the references.
  BLEU: sacrebleu sentence BLEU (13a tokenizer, lowercased, exponential smoothing, effective order), the
  maintained reference implementation of BLEU; BLEU-n is its geometric mean up to order n (cumulative, as in
  the COCO caption toolkit). We checked it equals nltk's sentence_bleu with NIST smoothing (method3).
  ROUGE-L: Google's rouge-score (a faithful re-implementation of ROUGE-1.5.5), F-measure, best reference.
  Pearson and Spearman r with 95% percentile-bootstrap CIs (resampling captions). Captions whose sample has
  no reference are skipped for this analysis and counted (n_no_reference).
- Analysis 2 (separability): every object mention gets a token-level reward (image vs the mention) and a
  sentence-level reward (image vs the sentence containing it; sentences split by the CHAIR pipeline's Punkt
  splitter).
  AUROC of -reward for "this object is hallucinated" (Mann-Whitney, ties count 1/2), 95% CIs by a cluster
  bootstrap over captions (objects of one caption are not independent), plus the paired CI of the difference.
  `token_beats_sentence` = 1 when the token-level CI lies entirely above the sentence-level CI.
- Analysis 3 (shift): `reward_shift(run_before, run_after, out_dir)`, or option baseline_run=RUN_DIR inside a
  run: object-reward distributions of two runs (FiSAO Figure 4), mean shift with bootstrap CI, KS statistic.
- Metric directions: AUROCs higher; correlations, rewards and counts "none". Plots: matplotlib (Agg) PNG
  files, because the report embeds static images and matplotlib is already a core dependency.
- Modules: statistics and the three analyses in reward_stats.py, text metrics and sentence spans in
  reward_text.py, figures in reward_plots.py; this module holds the task and re-exports their public names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from halbench.errors import DataError
from halbench.schema import GenerationSettings, Metric, Request, Response
from halbench.task import Task

from halbench.tasks.chair import PROMPT as DEFAULT_PROMPT
# the public API of the reward analyses lives in three modules, re-exported here (tests and FiSAO import it)
from halbench.tasks.reward_plots import plot_correlation, plot_separability, plot_shift  # noqa: F401
from halbench.tasks.reward_stats import (TEXT_METRICS, auroc, bootstrap, correlation_metrics,  # noqa: F401
                                         object_table, pearson, percentile_ci, separability_metrics,
                                         shift_metrics, spearman)
from halbench.tasks.reward_text import TextMetrics, sentence_of, sentence_spans  # noqa: F401

#: the CLIP zero-shot prompt (Radford et al. 2021); the world's CLIP was trained on "a photo of a {class}."
DEFAULT_PHRASE_TEMPLATE = "a photo of a {}."


# -- data ----------------------------------------------------------------------------------------------------
def load_references(path: str | Path) -> dict[Any, list[str]]:
    """{image_id: [reference captions]} from a COCO captions json ({"annotations": [{image_id, caption}]})."""
    import json

    from halbench.tasks.chair import image_id_of

    try:
        data = json.loads(Path(path).read_text())
        anns = data["annotations"] if isinstance(data, dict) else data
        refs: dict[Any, list[str]] = {}
        for a in anns:
            refs.setdefault(image_id_of(a["image_id"]), []).append(str(a["caption"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"not a COCO captions file ({type(e).__name__}: {e})", path=path) from e
    return refs


# -- the task ------------------------------------------------------------------------------------------------
class RewardAnalysisTask(Task):
    """Captions from the model, scored by CLIP at sentence and object level, analysed against CHAIR labels.

    Options: world (a built world dir; default the embedded one), images (dir; default the world's), gt
    (object sets, anything chair.load_gt reads; default the world's), captions (COCO captions json with the
    references; "none" skips analysis 1; default the world's), n_images, clip (CLIP dir; default the
    world's), phrase_template (default "a photo of a {}."), synonyms, pipeline, prompt, max_new_tokens,
    n_boot, seed, device, baseline_run (a finished run dir with reward_analysis records: analysis 3).
    """

    name: ClassVar[str] = "reward_analysis"
    variants: ClassVar[dict[str, str]] = {"default": "correlation + separability (+ shift with baseline_run=RUN)"}
    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("auroc_token", "higher", "AUROC of token-level reward for hallucinated objects"),
        Metric("auroc_sentence", "higher", "AUROC of sentence-level reward (sentence containing the object)"),
        Metric("auroc_response", "higher", "AUROC of the whole-response reward"),
        Metric("token_beats_sentence", "none", "1 if the token AUROC CI lies above the sentence AUROC CI"),
        *(Metric(f"{c}_{m}", "none", f"{c} r: sentence reward vs {m}") for c in ("pearson", "spearman")
          for m in TEXT_METRICS),
        Metric("n_no_reference", "none", "captions skipped in analysis 1 (no reference caption)"),
        Metric("n_reward_errors", "none", "captions whose image the CLIP could not read"),
    )

    def __init__(self, variant: str | None = None, **options: Any):
        super().__init__(variant, **options)
        self.prompt = str(options.get("prompt", DEFAULT_PROMPT))
        self.max_new_tokens = int(options.get("max_new_tokens", 128))
        self.n_boot = int(options.get("n_boot", 1000))
        self.seed = int(options.get("seed", 0))
        self._scorer: Any = None
        self._chair: Any = None
        self._text_metrics: TextMetrics | None = None

    # -- data -------------------------------------------------------------------------------------------
    def _world(self):
        from halbench.tasks.world_source import task_world

        return task_world(self.options)  # option world=DIR (`halbench eval --world DIR`), else the embedded one

    def _captions_path(self) -> Path | None:
        caps = self.options.get("captions", "world")
        if caps in (None, "", "none"):
            return None
        return Path(self._world().captions_json if caps == "world" else caps)

    def _gt_source(self) -> Any:
        return self.options.get("gt") or self._world().gt_objects_json

    def _clip_dir(self) -> Path:
        return Path(self.options.get("clip") or self._world().clip_dir)

    def data_files(self) -> list[Path]:
        """Ground truth, references and the CLIP's weights: results.json hashes them, so a run names the exact
        verifier that produced its rewards."""
        files = [Path(self._gt_source()), self._captions_path(), *sorted(self._clip_dir().glob("*.safetensors"))]
        return [f for f in files if f is not None and f.is_file()]

    def _image_paths(self, ids: list[Any]) -> dict[Any, Path]:
        from halbench.tasks.chair import image_id_of

        folder = self.options.get("images")
        if not folder:
            world = self._world()
            return {i: Path(world.image_path(i)) for i in ids}
        index = {image_id_of(f.name): f for f in sorted(Path(folder).iterdir()) if f.is_file()}
        return {i: index[i] for i in ids if i in index}

    def samples(self) -> list[dict[str, Any]]:
        from halbench.tasks.chair import load_gt

        gt = load_gt(self._gt_source(), pipeline=self.options.get("pipeline", "opera"),
                     synonyms=self.options.get("synonyms", "coco2018"))
        ids = sorted(gt, key=lambda i: (isinstance(i, str), i if isinstance(i, int) else 0, str(i)))  # as chair
        images = self._image_paths(ids)
        missing = [i for i in ids if i not in images]
        if missing:
            raise DataError(f"{len(missing)} ground-truth images have no file in {self.options.get('images')} "
                            f"(first: {missing[:3]})")
        refs = load_references(self._captions_path()) if self._captions_path() else {}
        n = self.options.get("n_images")
        ids = ids[:int(n)] if n else ids
        return [{"id": str(i), "image_id": i, "image": str(images[i]), "gt_objects": sorted(gt[i]),
                 "references": refs.get(i, [])} for i in ids]

    def request(self, sample: dict[str, Any]) -> Request:
        return Request(id=sample["id"], prompt=self.prompt, image=sample["image"],
                       generation=GenerationSettings(max_new_tokens=self.max_new_tokens))

    # -- scoring ----------------------------------------------------------------------------------------
    @property
    def scorer(self):
        if self._scorer is None:
            from halbench.clip_scorer import ClipScorer

            self._scorer = ClipScorer(self._clip_dir(), device=self.options.get("device", "cpu"),
                                      phrase_template=self.options.get("phrase_template", DEFAULT_PHRASE_TEMPLATE))
        return self._scorer

    @property
    def chair(self):
        if self._chair is None:
            from halbench.tasks.chair import ChairScorer

            self._chair = ChairScorer(self.options.get("synonyms", "coco2018"),
                                      self.options.get("pipeline", "opera"))
        return self._chair

    def score(self, sample: dict[str, Any], response: Response) -> dict[str, Any]:
        return self.score_batch([sample], [response])[0]

    def score_batch(self, samples: list[dict[str, Any]], responses: list[Response]) -> list[dict[str, Any]]:
        """Batched: image embeddings for the batch in one pass, then every caption/sentence/phrase text."""
        errors = self._image_errors([s["image"] for s in samples])
        parsed = [self._parse(s, r.text) for s, r in zip(samples, responses)]
        texts = [t for p, s in zip(parsed, samples) if s["image"] not in errors for t in p["texts"]]
        self.scorer.text_embeddings(texts)  # fills the text cache in batches; the calls below hit it
        return [self._record(s, p, errors.get(s["image"])) for s, p in zip(samples, parsed)]

    def _image_errors(self, images: list[str]) -> dict[str, str]:
        """{image: message} for images the CLIP cannot read; the others are embedded (cached) in batches."""
        try:
            self.scorer.image_embeddings(images)
            return {}
        except DataError:
            errors = {}
            for im in images:
                try:
                    self.scorer.image_embeddings([im])
                except DataError as e:
                    errors[im] = str(e)
            return errors

    def _parse(self, sample: dict[str, Any], caption: str) -> dict[str, Any]:
        mentions = self.chair.extract(caption)
        spans = sentence_spans(caption)
        sentences = [caption[a:b] for a, b in spans]
        phrases = [self.scorer.phrase_template.format(m.word) for m in mentions]
        return {"caption": caption, "mentions": mentions, "spans": spans, "sentences": sentences,
                "texts": [caption, *sentences, *phrases]}

    def _record(self, sample: dict[str, Any], p: dict[str, Any], error: str | None) -> dict[str, Any]:
        caption, gt = p["caption"], set(sample["gt_objects"])
        rec: dict[str, Any] = {"image_id": sample["image_id"], "caption": caption, "reward_error": error,
                               "sentence_reward": None, "objects": [], "has_reference": bool(sample["references"])}
        if sample["references"]:
            self._text_metrics = self._text_metrics or TextMetrics()
            rec.update(self._text_metrics(caption, sample["references"]))
        if error is not None:
            return rec
        image = sample["image"]
        rec["sentence_reward"] = self.scorer.sentence_rewards([image], [caption])[0]
        sent_r = self.scorer.sentence_rewards([image] * len(p["sentences"]), p["sentences"])
        tok_r = self.scorer.token_rewards(image, [m.word for m in p["mentions"]])
        rec["objects"] = [
            {"word": m.word, "cls": m.cls, "start": m.start, "hallucinated": m.cls not in gt,
             "token_reward": t, "sentence_reward": sent_r[sentence_of(p["spans"], m.start)]}
            for m, t in zip(p["mentions"], tok_r)]
        return rec

    # -- aggregation ------------------------------------------------------------------------------------
    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        generated = [r for r in records if r.get("error") is None]
        out: dict[str, Any] = {
            "n_samples": len(records), "n_errors": len(records) - len(generated),
            "n_reward_errors": sum(r.get("reward_error") is not None for r in generated),
            "n_no_reference": sum(not r.get("has_reference") for r in generated),
            "n_truncated_texts": self._scorer.truncated_count if self._scorer is not None else 0,
        }
        out.update(correlation_metrics(records, self.n_boot, self.seed))
        table = object_table(records)
        out.update(separability_metrics(table, self.n_boot, self.seed))
        before = None
        if self.options.get("baseline_run"):
            before = object_table(run_records(self.options["baseline_run"]))
            out.update(shift_metrics(before, table, self.n_boot, self.seed))
        if self.artifacts_dir is not None:
            self._plots(records, table, before, out)
        return _finite(out)

    def _plots(self, records, table, before, metrics) -> None:
        d = Path(self.artifacts_dir)
        d.mkdir(parents=True, exist_ok=True)
        if metrics.get("n_correlation", 0) >= 3:
            plot_correlation(records, metrics, d / "correlation.png")
            self.artifacts["sentence reward vs BLEU/ROUGE-L"] = "correlation.png"
        if table["token"].size:
            plot_separability(table, metrics, d / "separability.png")
            self.artifacts["token vs sentence reward: hallucinated vs correct objects"] = "separability.png"
        if before is not None and before["token"].size and table["token"].size:
            plot_shift(before, table, metrics, d / "shift.png", ("baseline run", "this run"))
            self.artifacts["object reward shift vs baseline run"] = "shift.png"


def _finite(metrics: dict[str, Any]) -> dict[str, Any]:
    """nan/inf -> None (undefined, e.g. AUROC with one class), so results.json stays valid JSON."""
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in metrics.items()}


def run_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """reward_analysis records of a finished run directory (DataError naming the file when absent)."""
    from halbench.runs import RunDir, read_records

    path = RunDir(run_dir).samples_path(RewardAnalysisTask.name)
    if not path.is_file():
        raise DataError("no reward_analysis records: run `halbench eval --tasks reward_analysis` first", path=path)
    return read_records(path)


def reward_shift(run_before: str | Path, run_after: str | Path, out_dir: str | Path, n_boot: int = 1000,
                 seed: int = 0) -> dict[str, Any]:
    """Analysis 3 between two runs: writes OUT/reward_shift.json + reward_shift.png, returns the metrics."""
    from halbench.runs import atomic_write_json

    before, after = object_table(run_records(run_before)), object_table(run_records(run_after))
    metrics = _finite(shift_metrics(before, after, n_boot, seed))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_shift(before, after, metrics, out / "reward_shift.png", (Path(run_before).name, Path(run_after).name))
    atomic_write_json(out / "reward_shift.json", {"before": str(run_before), "after": str(run_after),
                                                  "metrics": metrics, "plot": "reward_shift.png"})
    return metrics
