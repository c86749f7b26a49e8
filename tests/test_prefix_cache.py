"""halbench.models.prefix_cache: reuse must be exact (same greedy text as HFModel.generate) and must reuse."""

from __future__ import annotations

import numpy as np
import pytest

from halbench.schema import GenerationSettings, Request


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from PIL import Image

    from halbench.models.hf import HFModel
    from halbench.testing.tiny import make_tiny_llava

    tmp = tmp_path_factory.mktemp("prefix")
    hf = HFModel(make_tiny_llava(tmp / "llava", seed=0), batch_size=4)
    rng = np.random.default_rng(0)
    images = []
    for i in range(3):
        p = tmp / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (40 + 8 * i, 48, 3), dtype=np.uint8)).save(p)
        images.append(str(p))
    return hf, images


def requests(images):
    g = GenerationSettings(max_new_tokens=6)
    qs = ["Is there a dog in the image?", "Is there a cat?", "Is there a dining table in the image? Answer yes or no."]
    reqs = [Request(id=f"{i}-{q}", prompt=qs[q], image=img, generation=g)
            for q in range(3) for i, img in enumerate(images)]  # POPE order: questions of an image are apart
    reqs.append(Request(id="sys", prompt=qs[0], image=images[0], system="You are careful.", generation=g))
    reqs.append(Request(id="short", prompt=qs[1], image=images[1], generation=GenerationSettings(max_new_tokens=3)))
    reqs.append(Request(id="text-only", prompt="Say hello.", generation=g))
    reqs.append(Request(id="sampled", prompt=qs[0], image=images[2],
                        generation=GenerationSettings(max_new_tokens=6, do_sample=True)))
    return reqs


def test_same_greedy_text_as_hfmodel_generate(setup):
    from halbench.models.prefix_cache import PrefixCachedGenerator

    hf, images = setup
    reqs = requests(images)
    expected = hf.generate(reqs)
    gen = PrefixCachedGenerator(hf, batch_size=4)
    got = gen.generate(reqs)
    assert [r.text for r in got] == [r.text for r in expected]
    assert [r.n_generated_tokens for r in got] == [r.n_generated_tokens for r in expected]
    assert all(r.error is None for r in got)
    # 11 image requests, 4 distinct prefixes (3 images + the system prompt on image 0): 7 requests reuse a
    # prefix holding the 16 image tokens of the tiny LLaVA (32px / 8px patches) instead of prefilling it
    assert gen.stats["prefixes"] == 4
    assert gen.stats["prompt_tokens"] - gen.stats["prefilled_tokens"] >= 7 * 16


def test_image_features_are_cached_across_calls(setup):
    from halbench.models.prefix_cache import PrefixCachedGenerator

    hf, images = setup
    gen = PrefixCachedGenerator(hf, batch_size=8)
    reqs = [r for r in requests(images) if gen.supports(r)]
    first = gen.generate(reqs)
    assert gen.images.misses == 3 and gen.images.hits == 1  # the system-prompt prefix reuses image 0's features
    second = gen.generate(reqs)
    assert gen.images.misses == 3 and gen.images.hits > 0
    assert [r.text for r in first] == [r.text for r in second]


def test_unsupported_requests_go_to_the_wrapped_model(setup):
    from halbench.models.prefix_cache import PrefixCachedGenerator

    hf, images = setup
    gen = PrefixCachedGenerator(hf)
    reqs = requests(images)
    assert not gen.supports(reqs[-1]) and not gen.supports(reqs[-2]) and gen.supports(reqs[0])
    gen.generate(reqs[-2:])
    assert gen.stats["prefixes"] == 0
