"""ClipScorer: rewards equal CLIP's own cosine similarity, batching + caches work, bad dirs are refused."""

from __future__ import annotations

import json

import pytest
import torch

from halbench.clip_scorer import ClipScorer
from halbench.errors import DataError, ModelLoadError

WORDS = ("a photo of the dog cat red blue car sits on couch street next to and is in room table with two "
         "there person . ,").split()


def _tokenizer(append_eos: bool = True):
    """A real WordLevel tokenizer built offline. EOS id 3 (not 2: id 2 switches CLIP to legacy pooling)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "<unk>", "<s>", "</s>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    single = "<s> $A </s>" if append_eos else "<s> $A"
    tok.post_processor = processors.TemplateProcessing(single=single, special_tokens=[("<s>", 2), ("</s>", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>", model_max_length=16)


def make_tiny_clip(out_dir, seed: int = 0, append_eos: bool = True, max_len: int = 16):
    """A random-weight 2-layer CLIPModel (32 px images) + tokenizer + image processor saved as an HF dir."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    torch.manual_seed(seed)
    tok = _tokenizer(append_eos)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=max_len, pad_token_id=0,
                         bos_token_id=2, eos_token_id=3),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    CLIPModel(cfg).save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(out_dir)
    return out_dir


def make_images(folder, n: int = 3):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"img{i}.png"
        Image.new("RGB", (40, 36), color=(60 * i % 255, 200 - 50 * i, 30 + 70 * i)).save(p)
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def clip_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip")
    return make_tiny_clip(root / "clip"), make_images(root / "images")


def test_rewards_equal_clip_cosine(clip_env):
    from PIL import Image
    from transformers import CLIPModel

    clip_dir, images = clip_env
    scorer = ClipScorer(clip_dir)
    texts = ["a red dog sits on the couch .", "two cat", "there is a blue car on the street"]
    got = torch.tensor(scorer.sentence_rewards(images, texts))
    # reference: CLIP's own logits_per_image divided by its logit scale = cosine similarity
    model = CLIPModel.from_pretrained(clip_dir).eval()
    enc = scorer.tokenizer(texts, padding=True, return_tensors="pt")
    pix = scorer.image_processor(images=[Image.open(p).convert("RGB") for p in images],
                                 return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], pixel_values=pix)
    want = (out.logits_per_image / model.logit_scale.exp()).diagonal()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert got.abs().max() <= 1.0 + 1e-6 and got.std() > 0


def test_token_rewards_use_template_and_match_sentence(clip_env):
    clip_dir, images = clip_env
    plain = ClipScorer(clip_dir)
    assert plain.token_rewards(images[0], []) == []
    tok = plain.token_rewards(images[0], ["dog", "car"])
    assert tok == pytest.approx(plain.sentence_rewards([images[0]] * 2, ["dog", "car"]), abs=1e-6)
    templ = ClipScorer(clip_dir, phrase_template="a photo of the {}")
    assert templ.token_rewards(images[0], ["dog"]) == pytest.approx(
        plain.sentence_rewards([images[0]], ["a photo of the dog"]), abs=1e-6)
    with pytest.raises(ValueError, match="phrase_template"):
        ClipScorer(clip_dir, phrase_template="no slot")


def test_batches_and_caches_images(clip_env, monkeypatch):
    clip_dir, images = clip_env
    scorer = ClipScorer(clip_dir, batch_size=2)
    calls = []
    orig = scorer.model.get_image_features
    monkeypatch.setattr(scorer.model, "get_image_features",
                        lambda **kw: calls.append(kw["pixel_values"].shape[0]) or orig(**kw))
    first = scorer.sentence_rewards(images + images, ["dog"] * 6)
    assert calls == [2, 1]  # 3 distinct images in batches of 2, each encoded once
    again = scorer.token_rewards(images[1], ["dog", "cat"])
    assert calls == [2, 1]  # served from the per-image cache
    assert first[1] == pytest.approx(again[0], abs=1e-6) and first[1] == pytest.approx(first[4], abs=1e-6)


def test_long_text_is_truncated_and_counted(clip_env):
    clip_dir, images = clip_env
    scorer = ClipScorer(clip_dir)
    long = " ".join(["dog"] * 40)
    r = scorer.sentence_rewards([images[0]], [long])
    assert scorer.truncated_count == 1 and -1 <= r[0] <= 1


def test_bad_inputs(clip_env, tmp_path):
    clip_dir, _ = clip_env
    with pytest.raises(ModelLoadError, match="no config.json"):
        ClipScorer(tmp_path / "missing")
    llava = tmp_path / "llava"
    llava.mkdir()
    (llava / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(ModelLoadError, match="not a CLIP checkpoint.*'llava'"):
        ClipScorer(llava)
    no_eos = make_tiny_clip(tmp_path / "noeos", append_eos=False)
    with pytest.raises(ModelLoadError, match="EOS"):
        ClipScorer(no_eos)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        ClipScorer(clip_dir).sentence_rewards([broken], ["dog"])
