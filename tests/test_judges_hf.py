"""Local HF judges: a tiny causal LM (text judge) and a tiny LLaVA (image-aware judge), built offline."""

from __future__ import annotations

import random

import pytest

from halbench.errors import JudgeError
from halbench.judge_cache import JudgeCache
from halbench.judges import JUDGE_GENERATION, JudgeRequest, judge_from_options, make_judge
from halbench.schema import GenerationSettings
from halbench.tasks.mmhal import parse_strict

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _private_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HALBENCH_CACHE_DIR", str(tmp_path / "halbench-cache"))  # keep ~/.cache untouched


CHAT = ("{%- for message in messages -%}{%- if message['role'] == 'user' -%}USER: {{ message['content'] }} "
        "{% endif -%}{%- endfor -%}{%- if add_generation_prompt -%}ASSISTANT:{%- endif -%}")


def _tiny_lm(out_dir, train_steps: int = 0):
    """A 2-layer Llama causal LM; with train_steps > 0 it learns to answer any prompt with 'Rating: 5'."""
    from transformers import LlamaForCausalLM

    from halbench.testing.tiny import _llama_text_config, build_tokenizer

    torch.manual_seed(0)
    tok = build_tokenizer(["Rating: 5"], vocab_size=400, chat_template=CHAT)
    model = LlamaForCausalLM(_llama_text_config(tok))
    if train_steps:
        _train_to_say(model, tok, " Rating: 5", train_steps)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    return out_dir


def _train_to_say(model, tok, answer: str, steps: int) -> None:
    rng = random.Random(0)
    words = "the dog cat image shows a man on red table answer question rating grade".split()
    target = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        rows = []
        for _ in range(8):
            p = " ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))
            rows.append(tok(tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                                    tokenize=False))["input_ids"])
        width = max(len(r) for r in rows) + len(target)
        ids = torch.full((8, width), tok.pad_token_id)
        labels, mask = torch.full((8, width), -100), torch.zeros((8, width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r) + len(target)
            ids[i, :n], labels[i, len(r):n], mask[i, :n] = torch.tensor(r + target), torch.tensor(target), 1
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def _req(i, prompt, image=None, max_new_tokens=8):
    return JudgeRequest(id=str(i), prompt=prompt, image=image, generation=GenerationSettings(max_new_tokens))


def test_text_judge_counts_unparseable_output_as_failure_and_caches_nothing(tmp_path):
    path = _tiny_lm(tmp_path / "lm")
    cache = JudgeCache(tmp_path / "c.sqlite")
    judge = make_judge(f"hf:{path}", cache=cache)
    verdicts = judge.judge([_req(0, "Rate this answer."), _req(1, "Another, longer prompt to rate now.")],
                           parse_strict)
    assert all(not v.ok and v.value is None and "Rating" in v.error for v in verdicts)
    assert judge.judge_id.startswith("hf:lm@") and verdicts[0].model_id == judge.judge_id
    assert judge.stats.calls == 4 and judge.stats.completion_tokens > 0  # asked twice each
    assert len(cache) == 0 and "image" not in judge.capabilities
    with pytest.raises(JudgeError, match="text-only"):
        make_judge(f"hf:{path}", image=True)


def test_trained_text_judge_rates_and_is_cached(tmp_path):
    path = _tiny_lm(tmp_path / "lm", train_steps=40)
    cache = JudgeCache(tmp_path / "c.sqlite")
    judge = judge_from_options({"judge": f"hf:{path}", "judge_cache": str(tmp_path / "c.sqlite")})
    prompt = "a brand new judge prompt about a giraffe and a bus " * 3
    v = judge.judge([_req(0, prompt)], parse_strict)[0]
    assert v.ok and v.value == 5
    again = make_judge(f"hf:{path}", cache=cache).judge([_req(0, prompt)], parse_strict)[0]
    assert again.cached and again.value == 5


def test_vlm_judge_sees_the_image(tmp_path):
    from PIL import Image

    from halbench.testing.tiny import make_tiny_llava

    path = make_tiny_llava(tmp_path / "vlm")
    img = tmp_path / "x.png"
    Image.new("RGB", (32, 32), "blue").save(img)
    judge = make_judge(f"hf:{path}", image=True, cache=None)
    seen = []
    inner = judge.model.generate
    judge.model.generate = lambda reqs: seen.extend(reqs) or inner(reqs)
    v = judge.judge([_req(0, "Grade it.", image=str(img))], parse_strict)[0]
    assert seen[0].image == str(img) and judge.judge_id.endswith("+image")
    assert not v.ok and v.model_id == judge.judge_id  # random weights: no rating, counted as a failure
    text_judge = make_judge(f"hf:{path}", cache=None)  # the same VLM as a text-only judge drops the image
    text_judge.model.generate = lambda reqs: seen.extend(reqs) or inner(reqs)
    text_judge.judge([_req(1, "Grade it.", image=str(img))], parse_strict)
    assert seen[-1].image is None
    assert JUDGE_GENERATION.temperature == 0.0 and not JUDGE_GENERATION.do_sample
