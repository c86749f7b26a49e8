"""The online-DPO annotator (training/annotator.py) and rankers (training/online_rankers.py).

The annotator is tested against a stub halbench model (through HFJudge, as a local VLM judge would run) and
against a real HTTP server on 127.0.0.1 speaking /v1/chat/completions (openai:MODEL@URL)."""

from __future__ import annotations

import json
import re

import pytest

from halbench.judge_cache import JudgeCache
from halbench.schema import Response
from halbench.training.annotator import TEMPLATE, PairwiseAnnotator, parse_choice
from halbench.training.data import PreferenceRow

from .test_models_openai import FakeServer
from .test_training_fixtures import _private_cache, cfg_kwargs, pairs_file, tiny_llava  # noqa: F401

_RESP = re.compile(r"Response 1: (.*?)\n\nResponse 2: (.*?)\n\n", re.DOTALL)


def prefer_without(word: str, prompt: str) -> str:
    """An honest annotator: the response that does not mention `word` is better."""
    r1, r2 = _RESP.search(prompt).groups()
    return "Response 2 is better: Response 1 mentions a " + word if word in r1 and word not in r2 else \
        "Response 1. It has no " + word + "."


class StubVLM:
    """A halbench model stub: records every request and answers with `answer(prompt)`."""

    capabilities = frozenset({"generate", "image"})

    def __init__(self, answer):
        self.answer, self.requests = answer, []

    def fingerprint(self):
        return "stub-0001"

    def generate(self, requests):
        self.requests += list(requests)
        return [Response(text=self.answer(r.prompt)) for r in requests]


def _judge(stub, tmp_path):
    from halbench.judges.hf import HFJudge

    return HFJudge("stub", model=stub, image=True, cache=JudgeCache(tmp_path / "cache.sqlite"))


def _row(img, i=0):
    return PreferenceRow(prompt="Describe this image.", chosen="", rejected="", image=str(img), row=i + 1,
                         id=f"r{i}")


def test_parse_choice():
    assert parse_choice("Response 2\nBecause ...") == (2, None)
    assert parse_choice("**Response 1** is better.") == (1, None)
    assert parse_choice("Response 1 mentions a cat that is absent; Response 2 is better.") == (2, None)
    assert parse_choice("The better response is Response 1 since ...") == (1, None)
    assert parse_choice("I think Response 2, clearly.") == (2, None)
    assert parse_choice("Both are fine.")[0] is None and parse_choice("Both are fine.")[1]
    assert parse_choice("Response 1 or Response 2? Hard to say.")[0] is None


def test_annotator_asks_both_orders_and_caches(pairs_file, tmp_path):  # noqa: F811
    stub = StubVLM(lambda p: prefer_without("unicorn", p))
    ann = PairwiseAnnotator(judge=_judge(stub, tmp_path))
    img = pairs_file.parent / "img0.png"
    rows = [_row(img, 0), _row(img, 1)]
    a, b = ["A dog on grass.", "A dog and a unicorn."], ["A dog and a unicorn.", "A dog on grass."]
    assert ann.compare(rows, a, b) == [1, -1]
    assert len(stub.requests) == 4 and all(r.image == str(img) for r in stub.requests)
    first = stub.requests[0].prompt
    assert first == TEMPLATE.format(prompt="Describe this image.", response_1=a[0], response_2=b[0])
    assert stub.requests[2].prompt == TEMPLATE.format(prompt="Describe this image.", response_1=b[0],
                                                      response_2=a[0])  # the swapped order
    assert ann.stats.decided == 2 and ann.stats.inconsistent == 0
    assert ann.stats.as_metrics()["annotator/first_position_rate"] == pytest.approx(0.5)
    again = PairwiseAnnotator(judge=_judge(stub, tmp_path))  # same cache file: nothing is asked again
    assert again.compare(rows, a, b) == [1, -1] and len(stub.requests) == 4


def test_position_biased_annotator_decides_nothing(pairs_file, tmp_path):  # noqa: F811
    stub = StubVLM(lambda p: "Response 1 is better.")
    ann = PairwiseAnnotator(judge=_judge(stub, tmp_path))
    rows = [_row(pairs_file.parent / "img0.png")]
    assert ann.compare(rows, ["A dog."], ["A cat."]) == [None]
    assert ann.stats.inconsistent == 1 and ann.stats.as_metrics()["annotator/first_position_rate"] == 1.0
    no_swap = PairwiseAnnotator(judge=_judge(StubVLM(lambda p: "Response 1 is better."), tmp_path / "b"),
                                swap=False)
    assert no_swap.compare(rows, ["A dog."], ["A cat."]) == [1]  # without the swap the bias goes unseen


def test_pick_over_k_samples_by_pairwise_wins(pairs_file, tmp_path):  # noqa: F811
    # a consistent annotator that prefers fewer "unicorn"s: picks the cleanest and the worst sample
    def fewer(p):
        r1, r2 = _RESP.search(p).groups()
        return "Response 1" if r1.count("unicorn") <= r2.count("unicorn") else "Response 2"

    ann = PairwiseAnnotator(judge=_judge(StubVLM(fewer), tmp_path))
    rows = [_row(pairs_file.parent / "img0.png")]
    samples = [["A unicorn.", "A dog.", "A unicorn and a unicorn.", None]]
    assert ann.pick(rows, samples) == [(1, 2)]
    assert ann.stats.comparisons == 3  # the None sample is skipped


def test_annotator_over_a_real_http_endpoint(pairs_file, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HALBENCH_CACHE_DIR", str(tmp_path / "hc"))
    server = FakeServer()

    def behave(n, body):
        content = body["messages"][-1]["content"]
        text = next(p["text"] for p in content if p["type"] == "text")
        assert any(p["type"] == "image_url" and p["image_url"]["url"].startswith("data:image/") for p in content)
        return 200, server.ok_payload(body, prefer_without("unicorn", text)), 0.0, {}

    server.behave = behave
    try:
        ann = PairwiseAnnotator(f"openai:annotator-34b@{server.url}")
        rows = [_row(pairs_file.parent / "img1.png")]
        assert ann.compare(rows, ["A dog and a unicorn."], ["A dog."]) == [-1]
        assert len(server.calls) == 2 and server.calls[0]["body"]["model"] == "annotator-34b"
        assert server.calls[0]["body"].get("temperature", 0) == 0
        texts = [next(p["text"] for p in c["body"]["messages"][-1]["content"] if p["type"] == "text")
                 for c in server.calls]
        firsts = sorted(_RESP.search(t).group(1) for t in texts)  # both orders were asked (any call order)
        assert firsts == ["A dog and a unicorn.", "A dog."]
        again = PairwiseAnnotator(f"openai:annotator-34b@{server.url}")  # verdicts come from the judge cache
        assert again.compare(rows, ["A dog and a unicorn."], ["A dog."]) == [-1] and len(server.calls) == 2
    finally:
        server.httpd.shutdown()


def test_online_dpo_trains_with_the_annotator(tiny_llava, pairs_file, tmp_path):  # noqa: F811
    from halbench.training import online_dpo

    stub = StubVLM(lambda p: "Response 1" if len(_RESP.search(p).group(1)) <= len(_RESP.search(p).group(2))
                   else "Response 2")
    ann = PairwiseAnnotator(judge=_judge(stub, tmp_path))
    cfg = online_dpo.Config(**cfg_kwargs(tiny_llava, pairs_file, tmp_path / "out", max_steps=1, num_samples=2,
                                         max_new_tokens=5))
    online_dpo.train(cfg, reward=ann)
    rec = json.loads((tmp_path / "out" / "train" / "metrics.jsonl").read_text().splitlines()[0])
    assert rec["annotator/comparisons"] <= 2 and stub.requests  # 2 prompts x 1 pair each (identical: skipped)
    assert rec["online/pairs"] == rec["annotator/decided"]  # every decided verdict became a pair


def test_default_ranker_is_not_the_oracle(tmp_path):
    from halbench.training import online_dpo
    from halbench.training.online_rankers import make_ranker

    cfg = online_dpo.Config(output_dir=str(tmp_path))
    assert cfg.reward == "clip-objects" and not make_ranker(cfg.reward).oracle
    assert make_ranker("oracle-chair").oracle and make_ranker("chair").oracle
    with pytest.raises(Exception, match="unknown reward"):
        online_dpo.Config(output_dir=str(tmp_path), reward="annotator").check()


def test_clip_object_reward_is_ground_truth_free_and_ranks_world_captions():
    """On world images, naming a present object scores higher than naming the world's own noise object
    (the absent class that co-occurs most with a present one): the reward never sees the ground truth."""
    from halbench.training.online_rankers import ClipObjectReward
    from halbench.world import default_world
    from halbench.world.captions import noise_object
    from halbench.world.cooccurrence import default_table

    root = default_world().root
    gt = json.loads((root / "gt_objects.json").read_text())
    reward, table = ClipObjectReward(), default_table()
    wins = total = 0
    for image_id, objs in list(gt.items())[:30]:
        absent = noise_object(sorted(objs), table)[0]
        row = PreferenceRow(prompt="p", chosen="", rejected="", image=str(root / "images" / f"{int(image_id):012d}.png"))
        good, bad, none = reward([row] * 3, [f"There is a {objs[0]}.", f"There is a {absent}.", "Nothing."])
        wins += good > bad
        total += 1
        assert none == 0.0
    assert wins / total >= 0.7, (wins, total)
