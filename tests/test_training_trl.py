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
