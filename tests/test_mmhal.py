"""MMHal-Bench: rating parsers vs the reference rule, index % 8 vs question_type, and full runs through the
evaluator against a real chat-completions server on 127.0.0.1 (tests/test_judges.py's ChatServer)."""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

import pytest

from halbench.evaluator import evaluate
from halbench.models.base import Model
from halbench.schema import Request, Response
from halbench.tasks.mmhal import (OFFICIAL_FILE, TYPES, MMHalTask, load_mmhal, mmhal_metrics,
                                  official_ratings_found, parse_official, parse_strict, render_prompt)
from tests.test_judges import SECRET, SERVED_ID, ChatServer

CASES = [json.loads(line) for line in (Path(__file__).parent / "data/mmhal/judge_parsing_cases.jsonl").open()]

#: strict's reading of each case: an int, or None = counted as a judge failure (never a silent 0).
STRICT = {
    "Rating:5": 5, "Rating - 5": 5, "**Rating:** 5": 5, "Rating: **5**": 5, "Rating: 5\n\nFinal Rating: 5": 5,
    "The response deserves a rating: 6 rather than a rating: 4. Rating: 6": None, "Rating: 10": None,
    "Rating: 7": None, "Score: 5": None, "": None, "Rating: 3.5": None,
}


@pytest.mark.parametrize("case", CASES, ids=[c["judge_output"][:30] or "empty" for c in CASES])
def test_official_parse_reproduces_reference_rule(case):
    text = case["judge_output"]
    assert official_ratings_found(text) == case["ratings_found"]
    score, warning = parse_official(text)
    assert (score, warning) == (case["score"], case["warning_printed"])
    assert int(score < 3) == case["is_hallucination"]


@pytest.mark.parametrize("case", CASES, ids=[c["judge_output"][:30] or "empty" for c in CASES])
def test_strict_parse_flags_what_official_scores_zero_silently(case):
    text = case["judge_output"]
    rating, error = parse_strict(text)
    expected = STRICT.get(text, case["score"])
    assert rating == expected and (error is None) == (expected is not None)
    if case["warning_printed"]:  # official scores these 0: strict either reads the stated rating or fails
        assert rating != 0


def test_packaged_template_is_the_reference_copy():
    assert hashlib.sha1(OFFICIAL_FILE.read_bytes()).hexdigest().startswith("1fbb4071fe57")
    assert len(load_mmhal(OFFICIAL_FILE)) == 96


def test_index_mod_8_agrees_with_question_type_on_the_official_order():
    items = load_mmhal(OFFICIAL_FILE)
    assert [TYPES[i % 8] for i in range(96)] == [it["question_type"] for it in items]
    rng = random.Random(0)
    records = [{"error": None, "index": i, "question_type": it["question_type"], "rating": rng.randint(0, 6)}
               for i, it in enumerate(items)]
    official, strict = mmhal_metrics(records, "official"), mmhal_metrics(records, "strict")
    assert official["n_type_order_mismatch"] == 0
    for t in TYPES:
        assert official[f"score_{t}"] == strict[f"score_{t}"]
    # the same items in another order: index % 8 no longer names the type, and the check says so
    shuffled = [{**r, "index": j} for j, r in enumerate(rng.sample(records, len(records)))]
    off2 = mmhal_metrics(shuffled, "official")
    assert off2["n_type_order_mismatch"] > 0
    assert any(off2[f"score_{t}"] != strict[f"score_{t}"] for t in TYPES)
    assert mmhal_metrics(shuffled, "strict") == strict


def test_prompt_carries_labels_question_answer_response():
    item = load_mmhal(OFFICIAL_FILE)[0]
    text = render_prompt(item, "It is {red}.", MMHalTask(judge="openai:m@http://x", data="official").template)
    for part in ("Fire hydrant", item["question"], item["gt_answer"], "It is {red}.", "Rating: 0"):
        assert part in text


def test_official_data_needs_an_llm_judge():
    from halbench.errors import HalbenchError

    with pytest.raises(HalbenchError, match="needs an LLM judge"):
        MMHalTask(data="official")


# -- end to end over HTTP -------------------------------------------------------------------------------
class ScriptedVLM(Model):
    """Answers question i with a text whose judge markers the ChatServer obeys."""

    backend = "scripted"
    capabilities = frozenset({"generate", "image"})
    model_id = "scripted-vlm"

    def __init__(self, script):
        self.script = script

    def fingerprint(self):
        return "scripted"

    def generate(self, requests: list[Request]) -> list[Response]:
        return [Response(text=self.script(r)) for r in requests]


def _script(r: Request) -> str:
    i = int(r.id.rsplit("_", 1)[1])
    faults = {3: "[[500]]", 5: "[[NORATING]]", 7: "[[500x1]]", 9: "[[BADJSON]]", 11: "[[NORATINGx1]]"}
    return f"Answer {i}. {faults.get(i, '')} [[RATE {i % 7}]]"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("mmhal_images")
    for it in load_mmhal(OFFICIAL_FILE):
        Image.new("RGB", (8, 8), "gray").save(d / it["image_src"].rsplit("/", 1)[-1])
    return d


def _task(server, images, tmp_path, variant="strict", **kw):
    return MMHalTask(variant, data="official", images=str(images), judge=f"openai:gpt-4o@{server.url}",
                     judge_cache=str(tmp_path / "judge.sqlite"), judge_timeout=0.5, judge_backoff=0.01,
                     judge_max_retries=2, **kw)


def test_full_run_records_failures_and_rerun_hits_cache(images, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server = ChatServer()
    try:
        task = _task(server, images, tmp_path)
        res = evaluate(ScriptedVLM(_script), [task], tmp_path / "run1", batch_size=16, progress=False)
        recs = [json.loads(x) for x in (tmp_path / "run1/samples/mmhal.jsonl").read_text().splitlines()]
        assert len(recs) == 96
        by_i = {r["index"]: r for r in recs}
        for i in (3, 5, 9):  # failed for good: no rating, an error that says why
            assert by_i[i]["rating"] is None and by_i[i]["hallucination"] is None and by_i[i]["judge_error"]
        assert by_i[7]["rating"] == 0 and by_i[11]["rating"] == 4 and by_i[13]["rating"] == 6
        for r in recs:
            assert {"question_type", "question_topic", "rating", "hallucination", "judge_text", "judge_model",
                    "judge_error"} <= set(r)
            if r["rating"] is not None:
                assert r["judge_model"] == SERVED_ID and r["hallucination"] == (r["rating"] < 3)
        m = res["tasks"]["mmhal"]["metrics"]
        ratings = [r["rating"] for r in recs if r["rating"] is not None]
        assert m["n_judged"] == 93 and m["n_judge_failures"] == 3 and m["judge_failures"] == 3
        assert m["avg_score"] == pytest.approx(sum(ratings) / 93)
        assert m["hallucination_rate"] == pytest.approx(sum(x < 3 for x in ratings) / 93)
        # 93 verdicts + 3 unparseable replies carried the served model id
        assert res["tasks"]["mmhal"]["task"]["judge"]["returned_model_ids"] == {SERVED_ID: 96}
        calls = server.calls
        res2 = evaluate(ScriptedVLM(_script), [_task(server, images, tmp_path)], tmp_path / "run2",
                        batch_size=16, progress=False)
        m2 = res2["tasks"]["mmhal"]["metrics"]
        assert m2["judge_cached"] == 93 and m2["avg_score"] == m["avg_score"]
        failed_prompts = {p for p in server.attempts if re.search(r"\[\[(500|NORATING|BADJSON)\]\]", p)}
        assert server.calls - calls == sum(1 + (2 if "[[500]]" in p or "BADJSON" in p else 1)
                                           for p in failed_prompts)  # only the failures were asked again
        on_disk = b"".join(f.read_bytes() for d in (tmp_path,) for f in d.rglob("*") if f.is_file())
        assert SECRET.encode() not in on_disk
    finally:
        server.close()


def test_official_variant_scores_unparseable_as_zero_with_warning(images, tmp_path):
    server = ChatServer()
    script = lambda r: "**Rating:** 5 [[NORATING]]" if r.id.endswith("_000") else "fine [[RATE 5]]"  # noqa: E731
    try:
        res = evaluate(ScriptedVLM(script), [_task(server, images, tmp_path, "official", max_judge_calls=200)],
                       tmp_path / "off", batch_size=32, progress=False)
        recs = [json.loads(x) for x in (tmp_path / "off/samples/mmhal.jsonl").read_text().splitlines()]
        first = recs[0]
        assert first["rating"] == 0 and first["rating_warning"] is True and first["judge_error"] is None
        m = res["tasks"]["mmhal"]["metrics"]
        assert m["n_rating_warnings"] == 1 and m["n_judged"] == 96 and m["n_type_order_mismatch"] == 0
        assert server.attempts[next(p for p in server.attempts if "[[NORATING]]" in p)] == 1  # no re-ask
    finally:
        server.close()


def test_max_judge_calls_caps_a_run(images, tmp_path):
    server = ChatServer()
    try:
        task = _task(server, images, tmp_path, max_judge_calls=10)
        res = evaluate(ScriptedVLM(lambda r: "ok [[RATE 5]]"), [task], tmp_path / "cap", batch_size=8,
                       progress=False)
        m = res["tasks"]["mmhal"]["metrics"]
        assert server.calls == 10 and m["n_judged"] == 10 and m["n_judge_failures"] == 86
        assert m["judge_capped"] == 86
    finally:
        server.close()
