"""`halbench world ...`: rebuild, inspect and measure the embedded world (registered by halbench/cli.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import click


@click.group("world")
def world() -> None:
    """The embedded default world: procedural COCO-format images, tiny CLIP, tiny LLaVA VLM."""


@world.command("build")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write the world into (created).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for data and training.")
@click.option("--fast", is_flag=True, help="Seconds-long variant for tests: tiny data, tiny models, few steps.")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 64),
              help="torch CPU threads (1 is fastest on a busy shared machine; 2 on an idle 2-core one).")
@click.option("--measure/--no-measure", default=False, show_default=True,
              help="Measure the quality targets afterwards and store them in world.json.")
def build_cmd(out: Path, seed: int, fast: bool, threads: int, measure: bool) -> None:
    """Regenerate data and retrain CLIP + VLM from a seed (about 30 min on 2 CPU cores; --fast: seconds)."""
    from halbench.world.build import FAST, BuildConfig, build_world

    cfg = replace(FAST if fast else BuildConfig(), seed=seed, threads=threads)
    build_world(out, cfg, echo=click.echo)
    if measure:
        _measure(out, None, True)


@world.command("info")
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A built world (default: the one shipped in the package).")
def info_cmd(root: Path | None) -> None:
    """Where the world's files are, what it holds, and how it was built."""
    w = _open(root)
    meta = w.info()
    ids = w.image_ids()
    click.echo(f"world:      {w.root}")
    click.echo(f"images:     {len(ids)} ({w.images_dir})")
    click.echo(f"categories: {len(w.categories())}: {', '.join(w.categories())}")
    for name in ("instances_json", "captions_json", "gt_objects_json", "pope_dir", "clip_dir", "vlm_dir"):
        p = Path(getattr(w, name))
        click.echo(f"{name + ':':<16}{p}{'' if p.exists() else '  (missing)'}")
    if meta:
        click.echo(f"seed:       {meta['config']['seed']}   build seconds: {meta.get('total_seconds')}")
        click.echo(f"sizes:      {json.dumps(meta.get('sizes_bytes', {}))}")
        if "quality" in meta:
            click.echo(f"quality:    {json.dumps(meta['quality'], indent=1)}")


@world.command("measure")
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A built world (default: the one shipped in the package).")
@click.option("--n-chair", type=click.IntRange(1), default=None, help="Only the first N images for CHAIR.")
@click.option("--pope/--no-pope", default=True, show_default=True, help="Also measure POPE accuracy per split.")
def measure_cmd(root: Path | None, n_chair: int | None, pope: bool) -> None:
    """Measure the quality targets (recall, CHAIRi, partner share, CLIP AUROC, POPE ordering)."""
    _measure(root, n_chair, pope)


def _open(root: Path | None):
    from halbench.world import World, default_world

    return World(root) if root else default_world()


def _measure(root: Path | None, n_chair: int | None, pope: bool) -> None:
    from halbench.world.quality import measure, targets_met

    w = _open(root)
    r = measure(w, n_chair=n_chair, pope=pope)
    click.echo(json.dumps(r, indent=1))
    click.echo(json.dumps(targets_met(r), indent=1))
    meta_path = w.root / "world.json"
    if meta_path.is_file() and n_chair is None:
        meta = json.loads(meta_path.read_text())
        meta["quality"] = {k: v for k, v in r.items() if k != "examples"}
        meta_path.write_text(json.dumps(meta, indent=1) + "\n")
