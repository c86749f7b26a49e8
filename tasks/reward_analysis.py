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
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from halbench.errors import DataError
from halbench.schema import GenerationSettings, Metric, Request, Response
from halbench.task import Task

from halbench.tasks.chair import PROMPT as DEFAULT_PROMPT

TEXT_METRICS = ("bleu1", "bleu2", "bleu3", "bleu4", "rougeL")
#: the CLIP zero-shot prompt (Radford et al. 2021); the world's CLIP was trained on "a photo of a {class}."
DEFAULT_PHRASE_TEMPLATE = "a photo of a {}."


# -- statistics (pure numpy/scipy) -----------------------------------------------------------------------
def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve of `scores` for positive `labels` (Mann-Whitney U; ties count 1/2).
    nan when either class is empty."""
    from scipy.stats import rankdata

    s, y = np.asarray(scores, float), np.asarray(labels, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    from scipy.stats import rankdata

    return pearson(rankdata(x), rankdata(y))


def bootstrap(stat: Callable[[np.ndarray], Any], n_units: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """stat(resampled unit indices) for n_boot resamples with replacement: array [n_boot, ...]."""
    rng = np.random.default_rng(seed)
    return np.array([stat(rng.integers(0, n_units, n_units)) for _ in range(n_boot)], dtype=float)


def percentile_ci(samples: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile interval over the finite bootstrap values (nan, nan when there are none)."""
    s = np.asarray(samples, float)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(s, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


# -- text metrics ------------------------------------------------------------------------------------------
class TextMetrics:
    """BLEU-1..4 (sacrebleu) and ROUGE-L F (rouge-score) of one hypothesis against its references."""

    def __init__(self) -> None:
        from rouge_score import rouge_scorer
        from sacrebleu.metrics import BLEU

        self._bleu = {n: BLEU(max_ngram_order=n, lowercase=True, tokenize="13a", smooth_method="exp",
                              effective_order=True) for n in range(1, 5)}
        self._rouge = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)

    def __call__(self, hyp: str, refs: Sequence[str]) -> dict[str, float]:
        out = {f"bleu{n}": b.sentence_score(hyp, list(refs)).score / 100 for n, b in self._bleu.items()}
        out["rougeL"] = self._rouge.score_multi(list(refs), hyp)["rougeL"].fmeasure
        return out


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """[start, end) character spans of the sentences of `text`, split by the CHAIR pipeline's Punkt splitter
    (halbench.tasks.chair_text.split_sentences), so both analyses see the same sentences."""
    from halbench.tasks.chair_text import split_sentences

    spans, cursor = [], 0
    for sent in split_sentences(text):
        start = text.find(sent, cursor)
        if start < 0:  # Punkt returns exact substrings; be safe if that ever changes
            continue
        spans.append((start, start + len(sent)))
        cursor = start + len(sent)
    return spans or [(0, len(text))]


def sentence_of(spans: list[tuple[int, int]], pos: int | None) -> int:
    """Index of the sentence containing character `pos` (the first sentence when the position is unknown)."""
    if pos is None:
        return 0
    return next((i for i, (a, b) in enumerate(spans) if a <= pos < b), len(spans) - 1)


# -- analyses over records (pure functions; the task and reward_shift call them) ---------------------------
def _scored(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records with a caption and rewards (no generation error, no reward error)."""
    return [r for r in records if r.get("error") is None and r.get("reward_error") is None
            and r.get("sentence_reward") is not None]


def correlation_metrics(records: Sequence[dict[str, Any]], n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """Analysis 1: Pearson/Spearman r (+95% CI) of sentence reward vs each text metric."""
    rows = [r for r in _scored(records) if r.get("bleu1") is not None]
    out: dict[str, float] = {"n_correlation": len(rows)}
    if len(rows) < 3:
        return out
    reward = np.array([r["sentence_reward"] for r in rows])
    for m in TEXT_METRICS:
        y = np.array([r[m] for r in rows])
        for name, fn in (("pearson", pearson), ("spearman", spearman)):
            out[f"{name}_{m}"] = fn(reward, y)
            boot = bootstrap(lambda idx: fn(reward[idx], y[idx]), len(rows), n_boot, seed)
            out[f"{name}_{m}_ci_lo"], out[f"{name}_{m}_ci_hi"] = percentile_ci(boot)
    return out


def object_table(records: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Flatten object mentions: caption index, hallucinated label, token / sentence / response reward."""
    cols: dict[str, list] = {"caption": [], "hallucinated": [], "token": [], "sentence": [], "response": []}
    for i, r in enumerate(_scored(records)):
        for o in r.get("objects", []):
            cols["caption"].append(i)
            cols["hallucinated"].append(bool(o["hallucinated"]))
            cols["token"].append(o["token_reward"])
            cols["sentence"].append(o["sentence_reward"])
            cols["response"].append(r["sentence_reward"])
    return {k: np.asarray(v, dtype=bool if k == "hallucinated" else float) for k, v in cols.items()}


def _cluster_index(caption: np.ndarray) -> list[np.ndarray]:
    return [np.flatnonzero(caption == c) for c in range(int(caption.max()) + 1)] if caption.size else []


def separability_metrics(table: dict[str, np.ndarray], n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """Analysis 2: AUROC of -reward for 'hallucinated', per granularity, with cluster-bootstrap CIs."""
    y = table["hallucinated"]
    out: dict[str, float] = {"n_objects": int(y.size), "n_hallucinated_objects": int(y.sum())}
    kinds = ("token", "sentence", "response")
    for k in kinds:
        for lab, mask in (("hallucinated", y), ("correct", ~y)):
            out[f"{k}_reward_mean_{lab}"] = float(table[k][mask].mean()) if mask.any() else float("nan")
    clusters = _cluster_index(table["caption"])
    if not clusters:  # no object mentioned anywhere: every AUROC is undefined (reported as null)
        nan = float("nan")
        out.update({f"auroc_{k}{s}": nan for k in kinds for s in ("", "_ci_lo", "_ci_hi")})
        out.update({"auroc_diff_token_minus_sentence": nan, "auroc_diff_ci_lo": nan, "auroc_diff_ci_hi": nan,
                    "token_beats_sentence": 0})
        return out

    def stat(idx: np.ndarray) -> list[float]:
        sel = np.concatenate([clusters[i] for i in idx])
        return [auroc(-table[k][sel], y[sel]) for k in kinds]

    boot = bootstrap(stat, len(clusters), n_boot, seed)
    for j, k in enumerate(kinds):
        out[f"auroc_{k}"] = auroc(-table[k], y)
        out[f"auroc_{k}_ci_lo"], out[f"auroc_{k}_ci_hi"] = percentile_ci(boot[:, j])
    out["auroc_diff_token_minus_sentence"] = out["auroc_token"] - out["auroc_sentence"]
    lo, hi = percentile_ci(boot[:, 0] - boot[:, 1])
    out["auroc_diff_ci_lo"], out["auroc_diff_ci_hi"] = lo, hi
    out["token_beats_sentence"] = int(out["auroc_token_ci_lo"] > out["auroc_sentence_ci_hi"])
    return out


def _boot_mean(table: dict[str, np.ndarray], mask: np.ndarray, rng: np.random.Generator) -> float:
    """Mean token reward of the masked objects in one cluster-bootstrap resample of the captions."""
    clusters = _cluster_index(table["caption"])
    sel = np.concatenate([clusters[i] for i in rng.integers(0, len(clusters), len(clusters))])
    vals = table["token"][sel][mask[sel]]
    return float(vals.mean()) if vals.size else float("nan")


def shift_metrics(before: dict[str, np.ndarray], after: dict[str, np.ndarray], n_boot: int = 1000,
                  seed: int = 0) -> dict[str, float]:
    """Analysis 3: change of token-level object rewards between two runs (all / hallucinated / correct).
    Mean shift CI: captions of each run resampled independently (cluster bootstrap); KS statistic on objects."""
    from scipy.stats import ks_2samp

    out: dict[str, float] = {}
    for t, when in ((before, "before"), (after, "after")):
        frac = float(t["hallucinated"].mean()) if t["token"].size else float("nan")
        out[f"shift_hallucinated_fraction_{when}"] = frac
    rng = np.random.default_rng(seed)
    for lab in ("all", "hallucinated", "correct"):
        mb, ma = (_label_mask(t, lab) for t in (before, after))
        a, b = before["token"][mb], after["token"][ma]
        out[f"shift_n_{lab}_before"], out[f"shift_n_{lab}_after"] = int(a.size), int(b.size)
        if a.size == 0 or b.size == 0:
            continue
        out[f"shift_mean_{lab}"] = float(b.mean() - a.mean())
        boot = [_boot_mean(after, ma, rng) - _boot_mean(before, mb, rng) for _ in range(n_boot)]
        out[f"shift_mean_{lab}_ci_lo"], out[f"shift_mean_{lab}_ci_hi"] = percentile_ci(np.array(boot))
        out[f"shift_ks_{lab}"] = float(ks_2samp(a, b).statistic)
    return out


def _label_mask(table: dict[str, np.ndarray], label: str) -> np.ndarray:
    y = table["hallucinated"]
    return {"all": np.ones_like(y), "hallucinated": y, "correct": ~y}[label]


# -- plots (matplotlib's object API on the Agg canvas: no pyplot global state, no display needed) ----------
def _figure(n_panels: int, width: float = 3.2):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_panels, 3.0), dpi=110, layout="constrained")
    return fig, fig.subplots(1, n_panels, squeeze=False)[0]


def plot_correlation(records: Sequence[dict[str, Any]], metrics: dict[str, float], path: Path) -> None:
    """Analysis 1 figure: sentence reward (x) vs each text metric (y), one panel per metric."""
    rows = [r for r in _scored(records) if r.get("bleu1") is not None]
    fig, axes = _figure(len(TEXT_METRICS))
    x = [r["sentence_reward"] for r in rows]
    for ax, m in zip(axes, TEXT_METRICS):
        ax.scatter(x, [r[m] for r in rows], s=8, alpha=0.6)
        ax.set_xlabel("sentence-level CLIP reward")
        ax.set_ylabel(m)
        ax.set_title(f"Pearson {metrics.get(f'pearson_{m}', float('nan')):.2f}  "
                     f"Spearman {metrics.get(f'spearman_{m}', float('nan')):.2f}", fontsize=8)
    fig.savefig(path)


def _hist_pair(ax, values: np.ndarray, y: np.ndarray, labels: tuple[str, str], title: str) -> None:
    bins = np.histogram_bin_edges(values, bins=20) if values.size else 10
    for mask, lab, color in ((~y, labels[0], "tab:blue"), (y, labels[1], "tab:red")):
        ax.hist(values[mask], bins=bins, alpha=0.55, density=True, color=color, label=f"{lab} (n={mask.sum()})")
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("CLIP reward")
    ax.legend(fontsize=7)


def plot_separability(table: dict[str, np.ndarray], metrics: dict[str, float], path: Path) -> None:
    """Analysis 2 figure: reward histograms of correct vs hallucinated objects, token- and sentence-level."""
    fig, axes = _figure(2, width=4.0)
    for ax, k in zip(axes, ("token", "sentence")):
        a = metrics.get(f"auroc_{k}", float("nan"))
        lo, hi = metrics.get(f"auroc_{k}_ci_lo", float("nan")), metrics.get(f"auroc_{k}_ci_hi", float("nan"))
        _hist_pair(ax, table[k], table["hallucinated"], ("correct", "hallucinated"),
                   f"{k}-level: AUROC {a:.3f} [{lo:.3f}, {hi:.3f}]")
    fig.savefig(path)


def plot_shift(before: dict[str, np.ndarray], after: dict[str, np.ndarray], metrics: dict[str, float],
               path: Path, labels: tuple[str, str] = ("before", "after")) -> None:
    """Analysis 3 figure (FiSAO Fig. 4 style): token-level object rewards of two runs, by object label."""
    fig, axes = _figure(3)
    for ax, lab in zip(axes, ("all", "correct", "hallucinated")):
        vals = np.concatenate([before["token"][_label_mask(before, lab)], after["token"][_label_mask(after, lab)]])
        bins = np.histogram_bin_edges(vals, bins=20) if vals.size else 10
        for t, name, color in ((before, labels[0], "tab:gray"), (after, labels[1], "tab:green")):
            v = t["token"][_label_mask(t, lab)]
            ax.hist(v, bins=bins, alpha=0.55, density=True, color=color, label=f"{name} (n={v.size})")
        ax.set_title(f"{lab} objects: mean shift {metrics.get(f'shift_mean_{lab}', float('nan')):+.3f}", fontsize=8)
        ax.set_xlabel("token-level CLIP reward")
        ax.legend(fontsize=7)
    fig.savefig(path)


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
