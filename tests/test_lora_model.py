"""A peft LoRA adapter directory as --model: base resolved, merged once into the cache, evaluated like the
manually merged model; the cache key (so the fingerprint) covers base AND adapter."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from halbench.cli import main


def _make_adapter(base, out, seed: int):
    """A LoRA adapter on the tiny LLaVA with non-zero B (init_lora_weights=False), saved by peft itself."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_pretrained(base)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, cfg)
    with torch.no_grad():  # scale B up so the merged model's greedy answers move away from the base's
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.mul_(20.0)
    peft_model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from halbench.testing.tiny_families import make_tiny_llava

    root = tmp_path_factory.mktemp("lora")
    base = make_tiny_llava(root / "base")
    return base, _make_adapter(base, root / "adapter", 1), _make_adapter(base, root / "adapter2", 2), root


def _manual_merge(base, adapter, out):
    import shutil

    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    model = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(base), adapter).merge_and_unload()
    model.save_pretrained(out)
    for f in base.iterdir():
        if f.name not in ("model.safetensors", "config.json", "generation_config.json"):
            shutil.copy2(f, out / f.name)
    return out


def _eval(model_dir, out, *extra):
    from halbench.runs import read_records
    from halbench.world import default_world

    r = CliRunner().invoke(main, ["eval", "--model", str(model_dir), "--world", str(default_world().root),
                                  "--tasks", "pope", "--limit", "4", "--batch-size", "4", "--output-dir", str(out),
                                  *extra])
    assert r.exit_code == 0, r.output
    return [rec["response"] for rec in read_records(out / "samples" / "pope.jsonl")]


def test_adapter_eval_equals_manually_merged_model(setup, tmp_path, monkeypatch):
    base, adapter, _, root = setup
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(base)
    monkeypatch.setenv("HALBENCH_CACHE_DIR", str(tmp_path / "cache"))
    got = _eval(adapter, tmp_path / "via-adapter")
    want = _eval(_manual_merge(base, adapter, tmp_path / "merged"), tmp_path / "via-merged")
    assert got == want and len(got) == 4
    assert got != _eval(base, tmp_path / "via-base")  # the adapter really was applied


def test_merged_logits_equal_peft_merge_and_cache_key_covers_adapter(setup, tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForImageTextToText

    from halbench.models.lora import merged_checkpoint

    base, adapter, adapter2, _ = setup
    monkeypatch.setenv("HALBENCH_CACHE_DIR", str(tmp_path / "cache"))
    a = merged_checkpoint(adapter)
    stamp = (a / "model.safetensors").stat().st_mtime_ns
    assert merged_checkpoint(adapter) == a and (a / "model.safetensors").stat().st_mtime_ns == stamp  # once
    b = merged_checkpoint(adapter2)
    assert a != b
    ids = torch.tensor([[1, 5, 9, 12, 40]])
    ref = AutoModelForImageTextToText.from_pretrained(_manual_merge(base, adapter, tmp_path / "m")).eval()
    ours = AutoModelForImageTextToText.from_pretrained(a).eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(input_ids=ids).logits, ref(input_ids=ids).logits)
    from halbench.models.hf import dir_fingerprint

    assert dir_fingerprint(a) != dir_fingerprint(b) != dir_fingerprint(base)


def test_non_local_base_is_one_clear_error_then_base_model_option(setup, tmp_path, monkeypatch):
    import shutil

    base, adapter, _, _ = setup
    monkeypatch.setenv("HALBENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    hub = shutil.copytree(adapter, tmp_path / "hub-adapter")
    cfg = json.loads((hub / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "llava-hf/llava-1.5-7b-hf"
    (hub / "adapter_config.json").write_text(json.dumps(cfg))
    from halbench.world import default_world

    args = ["eval", "--model", str(hub), "--world", str(default_world().root), "--tasks", "pope", "--limit", "2",
            "--output-dir", str(tmp_path / "run")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    assert "base_model_name_or_path" in r.output and "--base-model" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "run").exists()
    r = CliRunner().invoke(main, args + ["--base-model", str(base)])
    assert r.exit_code == 0, r.output


def test_base_model_without_adapter_is_refused(setup):
    from halbench.errors import HalbenchError
    from halbench.models.lora import prepare_checkpoint

    base, _, _, _ = setup
    with pytest.raises(HalbenchError, match="not a LoRA adapter"):
        prepare_checkpoint(base, base_model=base)


def test_convert_merges_an_adapter_into_an_ordinary_checkpoint(setup, tmp_path):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    base, adapter, _, _ = setup
    out = tmp_path / "merged-by-cli"
    r = CliRunner().invoke(main, ["convert", str(adapter), str(out)])
    assert r.exit_code == 0, r.output
    AutoProcessor.from_pretrained(out)
    ids = torch.tensor([[1, 7, 3, 30]])
    ref = AutoModelForImageTextToText.from_pretrained(_manual_merge(base, adapter, tmp_path / "m")).eval()
    with torch.no_grad():
        got = AutoModelForImageTextToText.from_pretrained(out).eval()(input_ids=ids).logits
        torch.testing.assert_close(got, ref(input_ids=ids).logits)
    again = CliRunner().invoke(main, ["convert", str(adapter), str(out)])
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_training_refuses_a_stray_base_model_before_writing(setup, tmp_path):
    base, _, _, _ = setup
    r = CliRunner().invoke(main, ["train", "--method", "dpo", "--model", str(base), "--base-model", str(base),
                                  "--output-dir", str(tmp_path / "t")])
    assert r.exit_code == 2 and "not a LoRA adapter" in r.output and not (tmp_path / "t").exists()


def test_cli_base_model_does_not_leak_into_later_python_calls(setup, tmp_path, monkeypatch):
    from halbench.models import lora

    base, adapter, _, _ = setup
    monkeypatch.setenv("HALBENCH_CACHE_DIR", str(tmp_path / "cache"))
    r = CliRunner().invoke(main, ["convert", str(adapter), str(tmp_path / "m")])  # no --base-model: fine
    assert r.exit_code == 0, r.output
    _eval(adapter, tmp_path / "run", "--base-model", str(base))
    assert lora._cli_base_model is None
    assert lora.prepare_checkpoint(base) == base


def _original_llava_lora(root, clip):
    """A LoRA adapter as LLaVA's finetune_lora.sh saves it: peft over LlavaLlamaForCausalLM (keys
    base_model.model.model.layers...), non_lora_trainables.bin with the tuned mm_projector, the mm_* config.json."""
    import shutil

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    from halbench.testing.tiny_llava_original import make_tiny_original_llava

    base = make_tiny_original_llava(root / "orig-base", mm_vision_tower=str(clip))
    torch.manual_seed(3)
    lm = LlamaForCausalLM.from_pretrained(base)  # the LM part; mm_projector keys are not Llama's
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model = get_peft_model(lm, LoraConfig(r=4, lora_alpha=16, target_modules=targets, init_lora_weights=False))
    adapter = root / "llava-lora"
    peft_model.save_pretrained(adapter)
    proj = {f"base_model.model.model.mm_projector.{i}.{p}": torch.randn(64, 32 if i == 0 and p == "weight" else 64)
            if p == "weight" else torch.randn(64) for i in (0, 2) for p in ("weight", "bias")}
    torch.save(proj, adapter / "non_lora_trainables.bin")
    shutil.copy2(base / "config.json", adapter / "config.json")
    return base, adapter, proj


def test_original_llava_lora_adapter_merges_like_llava_builder(tmp_path):
    import json as _json

    import torch
    from PIL import Image
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor, CLIPVisionModel, LlamaForCausalLM

    from halbench.testing.tiny_llava_original import make_tiny_clip

    clip = make_tiny_clip(tmp_path / "clip")
    base, adapter, proj = _original_llava_lora(tmp_path, clip)
    out = tmp_path / "merged-hf"
    r = CliRunner().invoke(main, ["convert", str(adapter), str(out)])
    assert r.exit_code == 0, r.output
    model = AutoModelForImageTextToText.from_pretrained(out).eval()
    proc = AutoProcessor.from_pretrained(out)
    text = "USER: <image>\nIs there a dog? ASSISTANT:"
    inputs = proc(images=[Image.new("RGB", (30, 30), (20, 90, 200))], text=[text], return_tensors="pt")
    # reference: LLaVA builder.py - base LM + adapter merged by peft, projector from non_lora_trainables.bin
    lm = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(base), adapter).merge_and_unload().eval()
    tower = CLIPVisionModel.from_pretrained(clip).eval()
    w = {k.removeprefix("base_model.model.model.mm_projector."): v for k, v in proj.items()}
    mask = inputs["input_ids"] == _json.loads((out / "config.json").read_text())["image_token_index"]
    with torch.no_grad():
        feats = tower(inputs["pixel_values"], output_hidden_states=True).hidden_states[-2][:, 1:]
        feats = torch.nn.functional.gelu(feats @ w["0.weight"].T + w["0.bias"]) @ w["2.weight"].T + w["2.bias"]
        embeds = lm.get_input_embeddings()(inputs["input_ids"].masked_fill(mask, 0))
        embeds[mask] = feats.reshape(-1, feats.shape[-1])
        want = lm(inputs_embeds=embeds).logits
        got = model(**inputs).logits
    torch.testing.assert_close(got[..., : want.shape[-1]], want, atol=1e-4, rtol=1e-4)


def test_training_starts_from_a_lora_adapter_merged_like_eval(setup):
    """`halbench train --model ADAPTER` trains the merged model that `eval --model ADAPTER` evaluates."""
    from halbench.models.lora import prepare_checkpoint
    from halbench.training.loop import resolve_model

    base, adapter, _, _ = setup
    merged = resolve_model(str(adapter))
    assert merged == prepare_checkpoint(adapter) and merged != adapter and (merged / "config.json").is_file()
    assert resolve_model(str(base)) == base
