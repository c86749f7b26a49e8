"""Offline tokenizers and save helpers shared by the tiny family builders (halbench.testing.tiny_families).

`family_tokenizer` trains a real byte-level BPE (the `tokenizers` library) on halbench's built-in corpus and
lays out special tokens the way the family's published tokenizer does: the family's control tokens first
(ids 0..n-1, e.g. Llama's <unk> <s> </s>, Gemma's <pad> <eos> <bos> <unk>, Tekken's <unk> <s> </s> [INST] ...
[IMG]=10 ... [IMG_END]=13), the BPE vocabulary after them, and the tokens the published checkpoint ADDED on top
(added_tokens.json: llava's <image> <pad>, Qwen's <|im_start|> ... <|image_pad|>, ...) at the end, in the
published order. Only the vocabulary size (and so the ids of the end-appended tokens) is shrunk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

from halbench.testing.tiny import base_corpus


def family_tokenizer(
    *,
    front: Sequence[str],
    added: Sequence[str | tuple[str, bool]] = (),
    bos: str | None,
    eos: str,
    pad: str | None,
    unk: str | None,
    add_bos: bool,
    chat_template: str | None,
    named: dict[str, str] | None = None,
    style: str = "bytelevel",
    vocab_size: int = 1024,
    texts: Iterable[str] = (),
    padding_side: str = "left",
):
    """A PreTrainedTokenizerFast laid out like a family's published tokenizer (see module docstring).

    `style`: "bytelevel" (GPT-2 / tiktoken-style BPE: Qwen2, Llama-3, SmolLM2, Tekken), "metaspace" (SentencePiece
    BPE as Llama-2 / Vicuna / Mistral-v0.2 ship it in tokenizer.json: "▁" word prefix on the first word, byte
    fallback with <0x00>..<0xFF> right after the control tokens) or "gemma" (the same without the prefix).
    `added` items are "token" (special) or ("token", special?). `named` maps extra attribute names to tokens
    (e.g. {"image_token": "<image>"}: processors read `tokenizer.image_token`), saved as extra_special_tokens.
    """
    from tokenizers import AddedToken, processors
    from transformers import PreTrainedTokenizerFast

    corpus = list(texts) + base_corpus()
    tok = _bytelevel(front, unk, vocab_size, corpus) if style == "bytelevel" else _metaspace(
        front, unk, vocab_size, corpus, prepend="first" if style == "metaspace" else "never")
    for item in added:
        text, special = (item, True) if isinstance(item, str) else item
        token = AddedToken(text, special=special, normalized=False)
        (tok.add_special_tokens if special else tok.add_tokens)([token])
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    specials = {"bos_token": bos, "eos_token": eos, "pad_token": pad, "unk_token": unk}
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, padding_side=padding_side, chat_template=chat_template, model_max_length=4096,
        extra_special_tokens=dict(named or {}), **{k: v for k, v in specials.items() if v is not None},
    )


def _bytelevel(front, unk, vocab_size, corpus):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=max(vocab_size, 256 + len(front) + 1), special_tokens=list(front),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return tok


def _metaspace(front, unk, vocab_size, corpus, prepend: str):
    """SentencePiece-style BPE: trained on words (merges never cross a "▁"), then rebuilt with the byte-fallback
    tokens placed right after the control tokens, as in Llama's vocabulary (<0x00> = id 3 there)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    def meta(split: bool):
        return pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=prepend, split=split)

    trained = Tokenizer(models.BPE(unk_token=unk))
    trained.pre_tokenizer = meta(True)
    trained.train_from_iterator(corpus, trainer=trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(front), show_progress=False))
    spec = json.loads(trained.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in spec["merges"]]
    vocab = {t: i for i, t in enumerate(front)}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for t, _ in sorted(spec["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(t, len(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=unk, byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = meta(False)  # as Llama's tokenizer.json has it
    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    tok.decoder = decoders.Sequence(steps + ([decoders.Strip(" ", 1, 0)] if prepend == "first" else []))
    tok.add_special_tokens(list(front))
    return tok


def wordpiece_tokenizer(extra: Sequence[str] = ("[DEC]",), vocab_size: int = 512, padding_side: str = "right"):
    """A BERT-style (bert-base-uncased layout) WordPiece tokenizer: [PAD]=0 [UNK] [CLS] [SEP] [MASK], lower-cased,
    with `extra` added at the end (InstructBLIP's Q-Former tokenizer adds [DEC], vocab 30522 -> 30523)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    front = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(base_corpus(), trainer=trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=front, show_progress=False))
    tok.add_special_tokens(list(extra))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, padding_side=padding_side, model_max_length=512, unk_token="[UNK]",
        pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
    )


def ids(tokenizer, *tokens: str) -> list[int]:
    """Token ids of `tokens`, failing loudly if one is missing (it would map to <unk> silently)."""
    out = []
    for t in tokens:
        i = tokenizer.convert_tokens_to_ids(t)
        if i is None or i == tokenizer.unk_token_id and t != tokenizer.unk_token:
            raise ValueError(f"token {t!r} is not in the tiny tokenizer")
        out.append(i)
    return out


def save_model(model, out_dir: str | Path, *, family: str, published: str, seed: int,
               generation: dict | None = None) -> Path:
    """Save the random-weight model + generation_config (token ids as the published generation_config has them)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = model.generation_config
    for k, v in (generation or {}).items():
        setattr(gen, k, v)
    model.save_pretrained(out, safe_serialization=True)
    (out / "TINY_MODEL.md").write_text(
        f"Random-weight tiny {family} ({type(model).__name__}) mirroring {published}, built offline by "
        f"halbench.testing.tiny_families (seed={seed}). For tests only: it has never been trained.\n"
    )
    return out


def save_processor_parts(out: Path, *, tokenizer, image_processor, chat_template: str | None,
                         processor_config: dict, image_processor_type: str) -> None:
    """Save a processor whose class cannot be instantiated here (its video half needs torchvision) as the
    published checkpoint has it: tokenizer files, preprocessor_config.json, chat_template.jinja and a
    processor_config.json naming the standard processor class plus its published init fields."""
    tokenizer.save_pretrained(out)
    image_processor.save_pretrained(out)
    set_image_processor_type(out, image_processor_type, processor_config["processor_class"])
    if chat_template is not None:
        (out / "chat_template.jinja").write_text(chat_template)
    (out / "processor_config.json").write_text(json.dumps(processor_config, indent=2) + "\n")


def set_image_processor_type(out: Path, image_processor_type: str, processor_class: str | None = None) -> None:
    """Name the published image processor class on disk. transformers 5 nests the image processor config in
    processor_config.json (constructible processors) or writes preprocessor_config.json (a bare image
    processor, as the published repos have it); either way the `...Pil` backend we built it with must not be
    the name on disk: AutoImageProcessor maps the published name to the PIL backend when torchvision is absent
    and to the default backend when it is present."""
    proc_path, pre_path = out / "processor_config.json", out / "preprocessor_config.json"
    if pre_path.is_file():
        cfg = json.loads(pre_path.read_text())
        cfg["image_processor_type"] = image_processor_type
        if processor_class:
            cfg["processor_class"] = processor_class
        pre_path.write_text(json.dumps(cfg, indent=2) + "\n")
    if proc_path.is_file():
        cfg = json.loads(proc_path.read_text())
        if isinstance(cfg.get("image_processor"), dict):
            cfg["image_processor"]["image_processor_type"] = image_processor_type
            proc_path.write_text(json.dumps(cfg, indent=2) + "\n")


def set_tokenizer_class(out: Path, tokenizer_class: str) -> None:
    """Write the published `tokenizer_class` into tokenizer_config.json (transformers saves the class it was
    built with); every class named here loads our tokenizer.json unchanged (checked in the tests)."""
    rewrite_json(Path(out) / "tokenizer_config.json", tokenizer_class=tokenizer_class)


def rewrite_json(path: Path, **fields) -> None:
    """Set top-level fields of a saved JSON file (e.g. processor_config.json's processor_class)."""
    cfg = json.loads(path.read_text()) if path.is_file() else {}
    cfg.update(fields)
    path.write_text(json.dumps(cfg, indent=2) + "\n")
