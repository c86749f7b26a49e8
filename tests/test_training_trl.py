"""Parity with TRL 1.16's DPOTrainer on a tiny LLaVA: same batch tensors, same policy and reference weights,
loss within 1e-5 for loss_type sigmoid, ipo and sft (TRL computes its loss with its fused LM head; we use
training/losses.py through the shared loop's Session.logps)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from .test_training_fixtures import _private_cache, cfg_kwargs, pairs_file, tiny_llava  # noqa: F401

pytest.importorskip("trl")


def _examples(images):
    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe this image."}]}]

    def answer(text):
        return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]

    return [
        {"images": [images[0]], "prompt": prompt, "chosen": answer("A dog and a cat."),
         "rejected": answer("A dog, a cat and a car on the street.")},
        {"images": [images[1]], "prompt": prompt, "chosen": answer("A pizza on a table."),
         "rejected": answer("A pizza.")},
    ]


@pytest.fixture(scope="module")
def setup(tiny_llava, tmp_path_factory):  # noqa: F811
    from PIL import Image
    from transformers import AutoModelForImageTextToText

    from halbench.training.dpo import Config
    from halbench.training.loop import Session

    from .test_training_fixtures import make_images

    folder = tmp_path_factory.mktemp("trl")
    images = [Image.open(folder / p).convert("RGB") for p in make_images(folder, 2)]
    cfg = Config(**cfg_kwargs(tiny_llava, folder / "unused.jsonl", folder / "out"))
    session = Session(cfg, "dpo")
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # policy != reference, so the loss is not trivially log(2)
        for p in session.policy.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    ref = AutoModelForImageTextToText.from_pretrained(tiny_llava).eval()
    return session, ref, _examples(images), folder


def _trl_loss(setup, loss_type: str) -> tuple[float, dict]:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    session, ref, examples, folder = setup
    args = DPOConfig(output_dir=str(folder / f"trl-{loss_type}"), per_device_train_batch_size=2, beta=0.1,
                     loss_type=[loss_type], report_to=[], use_cpu=True, bf16=False, max_length=None)
    ds = Dataset.from_list([dict(e) for e in examples])
    trainer = DPOTrainer(model=session.policy, ref_model=ref, args=args, train_dataset=ds,
                         processing_class=session.hf.processor)
    batch = trainer.data_collator([dict(e) for e in examples])
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
    return float(loss), batch


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge", "sft"])
def test_loss_equals_trl_dpotrainer(setup, loss_type):
    from halbench.training.dpo import loss_from_logps

    session = setup[0]
    trl_loss, batch = _trl_loss(setup, loss_type)
    ours_batch = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
                  "pixel_values": batch["pixel_values"],
                  "labels": batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)}
    with torch.no_grad():
        logps, mask = session.logps(session.policy, ours_batch)
        ref_c, ref_r = session.ref_logps(ours_batch)[0].sum(1).chunk(2)
    cfg = dataclasses.replace(session.cfg, loss_type={"ipo": "ipo", "hinge": "slic"}.get(loss_type, "sigmoid"),
                              sft_weight=0.0, beta=0.1)
    loss, metrics = loss_from_logps(cfg, logps, mask, ref_c, ref_r)
    if loss_type == "sft":
        from halbench.training.losses import sft_nll

        loss = sft_nll(logps.chunk(2)[0], mask.chunk(2)[0])
    print(f"{loss_type}: ours={float(loss):.8f} trl={trl_loss:.8f}")
    assert abs(float(loss) - trl_loss) < 1e-5, (float(loss), trl_loss)
    if loss_type == "sigmoid":
        assert abs(float(loss) - 0.6931) > 1e-3  # a non-trivial value was compared


# -- end to end on ROWS: each side builds its own batch from the same preference rows ---------------------
# halbench's rule (training/data.py PairBatcher -> HFModel.build_inputs): a training sequence is tokenized
# exactly as evaluation tokenizes the prompt, i.e. the processor's own encoding of the chat template, which for
# Llama/LLaVA tokenizers starts with BOS. TRL 1.16 renders the same template but tokenizes it with
# add_special_tokens=False (it assumes the template writes BOS), so on a template that does not, its sequences
# lack the BOS the model sees at inference. With a template that writes `{{ bos_token }}` itself, TRL and
# halbench (which then adds no second BOS) build identical sequences.
def _rows(folder):
    from halbench.training.data import PreferenceRow

    from .test_training_fixtures import make_images

    imgs = make_images(folder, 2)
    return [PreferenceRow(id="0", image=str(folder / imgs[0]), prompt="Describe this image.",
                          chosen="A dog and a cat.", rejected="A dog, a cat and a car on the street."),
            PreferenceRow(id="1", image=str(folder / imgs[1]), prompt="Describe this image.",
                          chosen="A pizza on a table.", rejected="A pizza.")]


def _trl_rows_batch_and_loss(session, ref, rows, folder):
    from datasets import Dataset
    from PIL import Image
    from trl import DPOConfig, DPOTrainer

    def msg(role, text, image=False):
        return [{"role": role, "content": ([{"type": "image"}] if image else []) + [{"type": "text", "text": text}]}]

    examples = [{"images": [Image.open(r.image).convert("RGB")], "prompt": msg("user", r.prompt, image=True),
                 "chosen": msg("assistant", r.chosen), "rejected": msg("assistant", r.rejected)} for r in rows]
    args = DPOConfig(output_dir=str(folder / "trl-rows"), per_device_train_batch_size=len(rows), beta=0.1,
                     loss_type=["sigmoid"], report_to=[], use_cpu=True, bf16=False, max_length=None)
    trainer = DPOTrainer(model=session.policy, ref_model=ref, args=args, processing_class=session.hf.processor,
                         train_dataset=Dataset.from_list([dict(e) for e in examples]))
    batch = trainer.data_collator([dict(e) for e in trainer.train_dataset])  # TRL's own tokenization
    trainer.model.eval()
    with torch.no_grad():
        return batch, float(trainer.compute_loss(trainer.model, batch))


def _halbench_rows_loss(session, rows):
    from halbench.training.dpo import loss_from_logps

    batch = session.batcher.pairs(rows)  # halbench's own tokenization of the same rows
    with torch.no_grad():
        logps, mask = session.logps(session.policy, batch)
        ref_c, ref_r = session.ref_logps(batch)[0].sum(1).chunk(2)
    cfg = dataclasses.replace(session.cfg, loss_type="sigmoid", sft_weight=0.0, beta=0.1)
    return batch, float(loss_from_logps(cfg, logps, mask, ref_c, ref_r)[0])


def _sequences(batch, labels_key):
    """Per row: (token ids, response mask) over the unpadded positions."""
    out = []
    for i in range(batch["input_ids"].shape[0]):
        keep = batch["attention_mask"][i].bool()
        resp = (batch["labels"][i] != -100) if labels_key == "labels" else batch["completion_mask"][i].bool()
        out.append((batch["input_ids"][i][keep].tolist(), resp[keep].tolist()))
    return out


def _session_for(model_dir, folder):
    from transformers import AutoModelForImageTextToText

    from halbench.training.dpo import Config
    from halbench.training.loop import Session

    session = Session(Config(**cfg_kwargs(model_dir, folder / "unused.jsonl", folder / "out")), "dpo")
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # policy != reference, so the loss is not log(2)
        for p in session.policy.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    return session, AutoModelForImageTextToText.from_pretrained(model_dir).eval()


def test_rows_tokenized_as_at_inference_and_trl_differs_by_bos_only(tiny_llava, tmp_path):  # noqa: F811
    session, ref = _session_for(tiny_llava, tmp_path)
    rows = _rows(tmp_path)
    ours_batch, ours = _halbench_rows_loss(session, rows)
    trl_batch, trl = _trl_rows_batch_and_loss(session, ref, rows, tmp_path)
    bos = session.hf.tokenizer.bos_token_id
    # 1. the prompt part of every training sequence is exactly what evaluation sends for that prompt
    gen = session.hf.build_inputs(session.batcher.requests(rows))
    prompts = [ids for ids, _ in _sequences({**gen, "labels": gen["labels"]}, "labels")]
    for i, (ids, resp) in enumerate(_sequences(ours_batch, "labels")):
        assert ids[:resp.index(True)] == prompts[i % len(rows)]
        assert ids[0] == bos
    # 2. TRL's sequences are halbench's without the leading BOS: same response tokens, same eos
    for (o_ids, o_resp), (t_ids, t_resp) in zip(_sequences(ours_batch, "labels"), _sequences(trl_batch, "trl")):
        assert o_ids[0] == bos and t_ids[0] != bos
        assert o_ids[1:] == t_ids and o_resp[1:] == t_resp
    # 3. so the losses differ, by the effect of one BOS position: small and bounded
    print(f"rows: halbench {ours:.6f} TRL {trl:.6f} |diff| {abs(ours - trl):.2e}")
    assert 1e-7 < abs(ours - trl) < 5e-2  # 1.27e-2 on this tiny random model


def test_rows_match_trl_exactly_when_the_template_writes_bos(tiny_llava, tmp_path):  # noqa: F811
    import shutil

    model_dir = tmp_path / "bos_template"
    shutil.copytree(tiny_llava, model_dir)
    tpl = model_dir / "chat_template.jinja"
    tpl.write_text("{{ bos_token }}" + tpl.read_text())
    session, ref = _session_for(model_dir, tmp_path)
    rows = _rows(tmp_path)
    ours_batch, ours = _halbench_rows_loss(session, rows)
    trl_batch, trl = _trl_rows_batch_and_loss(session, ref, rows, tmp_path)
    bos = session.hf.tokenizer.bos_token_id
    ours_seq, trl_seq = _sequences(ours_batch, "labels"), _sequences(trl_batch, "trl")
    assert ours_seq == trl_seq and all(ids[0] == bos and ids[1] != bos for ids, _ in ours_seq)  # one BOS each
    print(f"bos template rows: halbench {ours:.8f} TRL {trl:.8f}")
    assert abs(ours - trl) < 1e-5
