"""BDHS_noise: the rejected answer is generated from a diffusion-noised image instead of a masked one.

Source: Amirloo et al. 2024 (arXiv 2407.02477), BDHS_noise ablation: POVID's noise (Zhou et al. 2024,
"Aligning Modalities in Vision Large Language Models via Preference Fine-tuning", arXiv 2402.11411), the
forward diffusion of DDPM (Ho et al. 2020, Eq. 4) at step N = 500 of 1000:

    beta_k = sigmoid(linspace(-6, 6, 1000)[k]) * (5e-3 - 1e-5) + 1e-5,  abar_N = prod_{k<=N} (1 - beta_k)
    x_N = sqrt(abar_N) * x + sqrt(1 - abar_N) * eps,  eps ~ N(0, I)

applied, as POVID's public code (`add_diffusion_noise(image_tensor, noise_step=500)`) does, to the processed
pixel tensor (after the processor's normalisation), with the step index 0-based into the 1000-step schedule
(torch.linspace(-6, 6, 1000), i.e. 12k/999 rather than the 12k/1000 a paraphrase writes). Guidance stays on
and image attention is not masked (the paper's BDHS_noise setting).
"""

from __future__ import annotations

from typing import Any

import torch

NUM_STEPS = 1000


def alpha_bar(step: int, num_steps: int = NUM_STEPS) -> float:
    """abar_step of the POVID/VCD sigmoid schedule (step is 0-based, < num_steps)."""
    if not 0 <= step < num_steps:
        raise ValueError(f"noise step must be in [0, {num_steps}), got {step}")
    betas = torch.sigmoid(torch.linspace(-6, 6, num_steps)) * (0.5e-2 - 1e-5) + 1e-5
    return float(torch.cumprod(1 - betas, dim=0)[step])


def diffusion_noise(pixel_values: torch.Tensor, step: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """x_step = sqrt(abar) x + sqrt(1 - abar) eps, elementwise over the processed pixel tensor."""
    ab = alpha_bar(step)
    eps = torch.randn(pixel_values.shape, generator=generator, dtype=torch.float32).to(pixel_values.device)
    return (ab ** 0.5 * pixel_values.float() + (1 - ab) ** 0.5 * eps).to(pixel_values.dtype)


@torch.no_grad()
def generate_noised_texts(hf: Any, requests: list[Any], prefixes: list[str | None], *, noise_step: int, seed: int,
                          max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0,
                          one_sentence: bool = False) -> list[str]:
    """Like image_mask.generate_masked_texts, but the image is noised (attention unmasked)."""
    from halbench.training.image_mask import _first_sentence

    inputs = hf.build_inputs(requests, prefixes)
    inputs.pop("labels", None)
    gen = torch.Generator().manual_seed(seed)
    inputs["pixel_values"] = diffusion_noise(inputs["pixel_values"], noise_step, gen)
    eos = hf.model.generation_config.eos_token_id
    eos = eos if eos is not None else hf.tokenizer.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos])
    kw = dict(max_new_tokens=max_new_tokens, pad_token_id=hf.tokenizer.pad_token_id, eos_token_id=eos)
    kw.update(dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0) if temperature > 0
              else dict(do_sample=False, temperature=None, top_p=None, top_k=None))
    kw_in = {k: v for k, v in inputs.items() if k != "position_ids"}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = hf.model.generate(**kw_in, **kw)[:, inputs["input_ids"].shape[1]:].tolist()
    texts = []
    for ids in out:
        end = next((i for i, t in enumerate(ids) if t in eos_ids), len(ids))
        text = hf.tokenizer.decode(ids[:end], skip_special_tokens=True)
        texts.append(_first_sentence(text) if one_sentence else text)
    return texts
