"""Sentence splitting, word tokenization and singularization behind CHAIR (halbench.tasks.chair_text)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from halbench.errors import NotAvailableError
from halbench.tasks import chair_text
from halbench.tasks.chair_text import singularize, split_sentences, word_tokenize

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def lemmatizer():
    try:
        return chair_text.opera_lemmatizer()
    except NotAvailableError as e:
        pytest.skip(f"NLTK WordNet/tagger data not found: {e}")


@pytest.mark.parametrize("text, expected", [
    ("a dog. a cat.", ["a dog.", "a cat."]),
    # English Punkt abbreviation: no break after "st."
    ("it points towards st. sebastian river park.", ["it points towards st. sebastian river park."]),
    # "10:10." -> Punkt word tokens "10", ":", "10." -> a number before a lowercase word: no break
    ("a time of approximately 10:10. behind the clock", ["a time of approximately 10:10. behind the clock"]),
    # "$0.60." is not a number type for Punkt (it starts with "$"): break
    ("costs $0.60. below the price", ["costs $0.60.", "below the price"]),
    # "etc", "e.g" are not in the English model's abbreviation list: break
    ("cups, plates, etc. the table is set.", ["cups, plates, etc.", "the table is set."]),
    # a closing quote after the period moves back into the first sentence
    ("labeled 'marting.co.' the sky is overcast.", ["labeled 'marting.co.'", "the sky is overcast."]),
    ("wait... the dog sleeps", ["wait... the dog sleeps"]),
    ("is it a dog? yes! it is.", ["is it a dog?", "yes!", "it is."]),
])
def test_sentence_splitter_follows_punkt_rules(text, expected):
    assert split_sentences(text) == expected


def test_word_tokenizer_keeps_nltk_38_quote_and_dash_rules():
    # NLTK >= 3.9 splits "'genuine" and pads em dashes; the official outputs (NLTK 3.8) do neither
    assert word_tokenize("the word 'genuine draft' in colors\u2014red. a dog's bowl.") == [
        "the", "word", "'genuine", "draft", "'", "in", "colors\u2014red", ".", "a", "dog", "'s", "bowl", "."]
    assert word_tokenize('he said "hi." then left') == ["he", "said", "``", "hi", ".", "''", "then", "left"]


def test_tokens_agree_with_official_outputs_on_all_300_captions(lemmatizer):
    """The official `words` (lemmas after double-word merging) of the Object HalBench exercise run.

    Agreement here measures the whole text pipeline (splitter, tokenizer, tagger, lemmatizer) against
    real Punkt + NLTK 3.8; it is 300/300 captions, token for token."""
    from halbench.tasks.chair import ChairScorer

    ref = json.loads(gzip.open(DATA / "objhal" / "kchaosun_beam_search_eval_chair300.json.gz").read())
    scorer = ChairScorer("coco2018", "opera")
    agree = sum(scorer.analyze(s["caption"]).words == s["words"] for s in ref["sentences"])
    n_sent = sum(len(split_sentences(s["caption"].lower())) for s in ref["sentences"])
    print(f"splitter+tokenizer agreement: {agree}/300 captions ({n_sent} sentences)")
    assert agree == 300


@pytest.mark.parametrize("word, expected", [
    ("dogs", "dog"), ("people", "person"), ("men", "man"), ("women", "woman"), ("children", "child"),
    ("knives", "knife"), ("glasses", "glass"), ("mice", "mouse"), ("skis", "ski"), ("benches", "bench"),
    ("buses", "bus"), ("puppies", "puppy"), ("doggies", "doggie"), ("scissors", "scissors"), ("sheep", "sheep"),
    ("leaves", "leaf"), ("wolves", "wolf"), ("oxen", "ox"), ("teeth", "tooth"), ("data", "datum"),
    # pattern quirks the 2018 numbers depend on
    ("glass", "glas"), ("bus", "bu"), ("shelves", "shelve"), ("ties", "ty"), ("your", "ymy"), ("ice", "ice"), ("dogs'", "dog's"),
])
def test_singularize_matches_pattern(word, expected):
    assert singularize(word) == expected


def test_token_spans_locate_rewritten_quotes():
    text = 'a "red" bus'
    tokens = word_tokenize(text)
    spans = chair_text.token_spans(text, tokens)
    assert [text[s:e] for s, e in spans] == ["a", '"', "red", '"', "bus"]
