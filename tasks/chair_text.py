"""Text processing behind CHAIR: sentence splitting, word tokenization, lemmatization, singularization.

The official CHAIR scorers run `nltk.word_tokenize(caption.lower())`, which splits sentences with NLTK's
pretrained English Punkt model and then applies the Treebank word tokenizer to each sentence. The sentence
split matters: the Treebank tokenizer only detaches the *final* period of its input, so an unsplit
"...a sink. the mirror..." yields the token "sink." and the sink is never counted.

The Punkt *model* (`punkt` / `punkt_tab` in nltk_data) is not always installed, so `split_sentences` runs
NLTK's own Punkt algorithm (`PunktSentenceTokenizer`) with the English model's abbreviation list
(`ENGLISH_ABBREVIATIONS`, copied from nltk_data `tokenizers/punkt_tab/english/abbrev_types.txt`) and
without the model's orthographic statistics. Captions are lowercased before splitting, and for lowercase
text the orthographic statistics decide nothing except one rare case (a number or single-letter initial
followed by a word that the model only ever saw lowercase at sentence starts); the collocation list only
pairs numbers/initials with words, which lowercase text already leaves unsplit. Agreement with the real
Punkt output is measured in tests/test_chair_text.py on the official scorer's token lists.

Lemmatizers:
- `OperaLemmatizer` (pipeline "opera"; OPERA/Maxlinn chair.py, lmms-eval, less-is-more): NLTK averaged
  perceptron POS tags over the whole caption, then WordNet `lemmatize(word, pos)` with J->a, V->v, N->n,
  R->r and anything else -> n. Lemmas are cached per (word, tag); the tagger and WordNet load once.
- `singularize` (pipeline "2018"; LisaAnne/Hallucination chair.py used `pattern.en.singularize`): a port of
  pattern 2.6's rule list, quirks included (see its docstring).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from halbench.errors import DataError, NotAvailableError

# NLTK punkt English model, abbrev_types (nltk_data tokenizers/punkt_tab/english/abbrev_types.txt).
# Note what is *not* here: "etc", "e.g", "i.e", "no" -- Punkt splits after those.
ENGLISH_ABBREVIATIONS = frozenset("""
ct m.j t a.c n.h ms p.a.m dr pa p.m u.k st dec u.s.a lt g.k adm p h.m ga tenn yr sen n.c j.j d.h s.g inc
vs s.p.a a.t n feb sr jan s.a.y n.y col g.f c.o.m.b d ft va r.k e.f chg r.i a.g minn a.h k n.j m l.f f.j gen
i.m.s s.a aug j.p okla m.d.c ltd oct s vt r.a j.c ariz w.w b.v ore h w.r e.h mrs cie corp w n.v a.d r.j ok
e.m w.c ill nov u.s prof conn u.s.s.r mg f.g ph.d g calif messrs h.f wash tues sw bros u.n l wis mr sep d.c
ave e.l co s.s reps c r.t h.c r wed a.s v fla jr r.h c.v m.b.a rep a.a e c.i.t l.a b.f j.b d.w j.k ala f
w.va sept mich n.m j.r l.p s.c colo fri a.m g.d kan maj ky a.m.e n.d t.j cos nev
""".split()) | {". ."}

_lock = threading.Lock()


@lru_cache(maxsize=1)
def _sentence_splitter():
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    params = PunktParameters()
    params.abbrev_types = set(ENGLISH_ABBREVIATIONS)
    return PunktSentenceTokenizer(params)


def _rules(pairs):
    return [(re.compile(p, re.U), r) for p, r in pairs]


class TreebankTokenizer:
    """NLTK's `NLTKWordTokenizer` as of NLTK 3.8 (the version behind the published CHAIR outputs).

    Later NLTK releases split a leading apostrophe off any word ("'genuine" -> "'", "genuine") and pad
    dashes U+2012-2015; the official outputs keep both attached ("'genuine", "colors—red"), and a
    different token also changes the POS tags around it, so the older rules are restated here.
    """

    STARTING_QUOTES = _rules([
        ("([«“‘„]|[`]+)", r" \1 "), (r'^\"', r"``"), (r"(``)", r" \1 "),
        (r"([ \(\[{<])(\"|\'{2})", r"\1 `` "), (r"(?i)(\')(?!re|ve|ll|m|t|s|d|n)(\w)\b", r"\1 \2"),
    ])
    ENDING_QUOTES = _rules([
        ("([»”’])", r" \1 "), (r"''", " '' "), (r'"', " '' "),
        (r"([^' ])('[sS]|'[mM]|'[dD]|') ", r"\1 \2 "), (r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ", r"\1 \2 "),
    ])
    PUNCTUATION = _rules([
        (r'([^\.])(\.)([\]\)}>"\'' "»”’ " r"]*)\s*$", r"\1 \2 \3 "),
        (r"([:,])([^\d])", r" \1 \2"), (r"([:,])$", r" \1 "), (r"\.{2,}", r" \g<0> "), (r"[;@#$%&]", r" \g<0> "),
        (r'([^\.])(\.)([\]\)}>"\']*)\s*$', r"\1 \2\3 "), (r"[?!]", r" \g<0> "), (r"([^'])' ", r"\1 ' "),
        (r"[*]", r" \g<0> "),
    ])
    PARENS = _rules([(r"[\]\[\(\)\{\}\<\>]", r" \g<0> "), (r"--", r" -- ")])

    def __init__(self) -> None:
        from nltk.tokenize.destructive import MacIntyreContractions

        c = MacIntyreContractions()
        self.contractions = [re.compile(p) for p in c.CONTRACTIONS2 + c.CONTRACTIONS3]

    def tokenize(self, text: str) -> list[str]:
        for regexp, sub in self.STARTING_QUOTES + self.PUNCTUATION + self.PARENS:
            text = regexp.sub(sub, text)
        text = " " + text + " "
        for regexp, sub in self.ENDING_QUOTES:
            text = regexp.sub(sub, text)
        for regexp in self.contractions:
            text = regexp.sub(r" \1 \2 ", text)
        return text.split()


@lru_cache(maxsize=1)
def _word_tokenizer() -> TreebankTokenizer:
    return TreebankTokenizer()


def split_sentences(text: str) -> list[str]:
    """Punkt sentence split (English abbreviations, no orthographic model); see the module docstring."""
    return _sentence_splitter().tokenize(text)


def word_tokenize(text: str) -> list[str]:
    """`nltk.word_tokenize(text)` without the punkt model: sentences, then Treebank tokens per sentence."""
    tok = _word_tokenizer()
    return [t for sent in split_sentences(text) for t in tok.tokenize(sent)]


def token_spans(text: str, tokens: list[str]) -> list[tuple[int, int] | None]:
    """Character span of each token in `text` (None when a token cannot be located, e.g. rewritten quotes)."""
    quotes = {"``": ('"', "``", "''"), "''": ('"', "''", "``"), '"': ('"',)}
    spans: list[tuple[int, int] | None] = []
    pos = 0
    for t in tokens:
        best = None
        for cand in quotes.get(t, (t,)):
            i = text.find(cand, pos)
            if i >= 0 and (best is None or i < best[0]):
                best = (i, i + len(cand))
        spans.append(best)
        if best is not None:
            pos = best[1]
    return spans


# ---------------------------------------------------------------------------------------------------
# OPERA-style lemmatizer: POS tag + WordNet lemma
# ---------------------------------------------------------------------------------------------------
_NLTK_HELP = (
    "the OPERA-style CHAIR pipeline needs NLTK's WordNet corpus and averaged perceptron tagger, which "
    "halbench bundles (halbench/data/nltk_data) - this install lacks them: reinstall halbench, or run "
    "`halbench setup-nltk --from DIR` with an NLTK data folder (online: `halbench setup-nltk` downloads them)"
)


class OperaLemmatizer:
    """POS-aware WordNet lemmatization exactly as OPERA's chair.py does it, with per-(word, tag) caching."""

    def __init__(self) -> None:
        from halbench.nltk_setup import register_bundled_data

        register_bundled_data()
        try:
            from nltk.corpus import wordnet
            from nltk.stem import WordNetLemmatizer
            from nltk.tag.perceptron import PerceptronTagger

            self._tagger = PerceptronTagger()
            wordnet.ensure_loaded()
        except LookupError as e:
            missing = next((ln.strip() for ln in str(e).splitlines() if "Resource" in ln), "data not found")
            raise NotAvailableError(f"{_NLTK_HELP} ({missing})") from e
        self._wnl = WordNetLemmatizer()
        self._cache: dict[tuple[str, str], str] = {}

    @staticmethod
    def wordnet_pos(tag: str) -> str:
        # OPERA get_wordnet_pos(tag) or wordnet.NOUN
        return {"J": "a", "V": "v", "N": "n", "R": "r"}.get(tag[:1], "n")

    def tag(self, tokens: list[str]) -> list[str]:
        return [t for _, t in self._tagger.tag(tokens)]

    def lemmatize(self, tokens: list[str]) -> list[str]:
        out = []
        for word, tag in zip(tokens, self.tag(tokens)):
            key = (word, self.wordnet_pos(tag))
            lemma = self._cache.get(key)
            if lemma is None:
                lemma = self._cache[key] = self._wnl.lemmatize(word, pos=key[1])
            out.append(lemma)
        return out


@lru_cache(maxsize=1)
def opera_lemmatizer() -> OperaLemmatizer:
    with _lock:
        return OperaLemmatizer()


# ---------------------------------------------------------------------------------------------------
# pattern 2.6 singularize (the 2018 pipeline)
# ---------------------------------------------------------------------------------------------------
_PLURAL_PREPOSITIONS = frozenset(
    "about before during of till above behind except off to across below for on under after beneath "
    "from onto until among beside in out unto around besides into over upon at between near since with "
    "athwart betwixt beyond but by".split()
)
# (regex, replacement) in pattern's order; the first rule that matches wins.
_SINGULAR_RULES = [(re.compile(p), r) for p, r in [
    (r"(?i)(.)ae$", r"\1a"), (r"(?i)(.)itis$", r"\1itis"), (r"(?i)(.)eaux$", r"\1eau"),
    (r"(?i)(quiz)zes$", r"\1"), (r"(?i)(matr)ices$", r"\1ix"), (r"(?i)(ap|vert|ind)ices$", r"\1ex"),
    (r"(?i)^(ox)en", r"\1"), (r"(?i)(alias|status)es$", r"\1"), (r"(?i)([octop|vir])i$", r"\1us"),
    (r"(?i)(cris|ax|test)es$", r"\1is"), (r"(?i)(shoe)s$", r"\1"), (r"(?i)(o)es$", r"\1"),
    (r"(?i)(bus)es$", r"\1"), (r"(?i)([m|l])ice$", r"\1ouse"), (r"(?i)(x|ch|ss|sh)es$", r"\1"),
    (r"(?i)(m)ovies$", r"\1ovie"), (r"(?i)(.)ombies$", r"\1ombie"), (r"(?i)(s)eries$", r"\1eries"),
    (r"(?i)([^aeiouy]|qu)ies$", r"\1y"),
    (r"([aeo]l)ves$", r"\1f"), (r"([^d]ea)ves$", r"\1f"), (r"arves$", "arf"), (r"erves$", "erve"),
    (r"([nlw]i)ves$", r"\1fe"), (r"(?i)([lr])ves$", r"\1f"), (r"([aeo])ves$", r"\1ve"),
    (r"(?i)(sive)s$", r"\1"), (r"(?i)(tive)s$", r"\1"), (r"(?i)(hive)s$", r"\1"), (r"(?i)([^f])ves$", r"\1fe"),
    (r"(?i)(^analy)ses$", r"\1sis"),
    (r"(?i)((a)naly|(b)a|(d)iagno|(p)arenthe|(p)rogno|(s)ynop|(t)he)ses$", r"\1\2sis"),
    (r"(?i)(.)opses$", r"\1opsis"), (r"(?i)(.)yses$", r"\1ysis"), (r"(?i)(h|d|r|o|n|b|cl|p)oses$", r"\1ose"),
    (r"(?i)(fruct|gluc|galact|lact|ket|malt|rib|sacchar|cellul)ose$", r"\1ose"), (r"(?i)(.)oses$", r"\1osis"),
    (r"(?i)([ti])a$", r"\1um"), (r"(?i)(n)ews$", r"\1ews"), (r"(?i)s$", ""),
]]
_SINGULAR_UNINFLECTED = (
    "bison bream breeches britches carp chassis christmas clippers cod contretemps corps debris diabetes djinn "
    "eland elk flounder gallows georgia graffiti headquarters herpes high-jinks homework innings jackanapes "
    "mackerel measles mews mumps news pincers pliers proceedings rabies salmon scissors series shears species "
    "swine swiss trout tuna whiting wildebeest"
).split()
_SINGULAR_UNCOUNTABLE = (
    "advice bread butter cheese electricity equipment fruit furniture garbage gravel happiness information "
    "ketchup knowledge love luggage mathematics mayonnaise meat mustard news progress research rice sand "
    "software understanding water"
).split()
_SINGULAR_IE = (
    "algerie auntie beanie birdie bogie bombie bookie collie cookie cutie doggie eyrie freebie goonie groupie "
    "hankie hippie hoagie hottie indie junkie laddie laramie lingerie meanie nightie oldie ^pie pixie quickie "
    "reverie rookie softie sortie stoolie sweetie techie ^tie toughie valkyrie veggie weenie yuppie zombie"
).split()
_SINGULAR_IRREGULAR = {
    "men": "man", "people": "person", "children": "child", "sexes": "sex", "axes": "axe", "moves": "move",
    "teeth": "tooth", "geese": "goose", "feet": "foot", "zoa": "zoon", "atlantes": "atlas", "atlases": "atlas",
    "beeves": "beef", "brethren": "brother", "corpora": "corpus", "corpuses": "corpus", "kine": "cow",
    "ephemerides": "ephemeris", "ganglia": "ganglion", "genii": "genie", "genera": "genus",
    "graffiti": "graffito", "helves": "helve", "leaves": "leaf", "loaves": "loaf", "monies": "money",
    "mongooses": "mongoose", "mythoi": "mythos", "octopodes": "octopus", "opera": "opus", "opuses": "opus",
    "oxen": "ox", "penes": "penis", "penises": "penis", "soliloquies": "soliloquy", "testes": "testis",
    "trilbys": "trilby", "turves": "turf", "numena": "numen", "occipita": "occiput", "our": "my",
}


@lru_cache(maxsize=65536)
def singularize(word: str) -> str:
    """pattern 2.6 `pattern.en.singularize(word)` (the 2018 CHAIR pipeline), ported rule for rule.

    Faithful quirks (they change which words match the synonym list, identically for GT captions):
    "glass" -> "glas" (hence the official 'wine glas' double word), "bus" -> "bu", "ties" -> "ty",
    "your" -> "ymy" (irregular "our" -> "my" matched as a suffix), a word that is a suffix of an
    uninflected/uncountable word is returned unchanged ("ice", "ears"), "doggies" -> "doggie".
    Where it may differ from the real library: no two irregular keys are suffixes of each other, so
    Python 2 dict order cannot matter; the 2.6 release and the fork this port follows
    (sloria/pattern) could differ in list contents we could not verify offline.
    """
    if "-" in word:
        parts = word.split("-")
        if len(parts) > 1 and parts[1] in _PLURAL_PREPOSITIONS:
            return singularize(parts[0]) + "-" + "-".join(parts[1:])
    if word.endswith("'"):
        return singularize(word[:-1]) + "'s"
    lower = word.lower()
    if any(w.endswith(lower) for w in _SINGULAR_UNINFLECTED) or any(
        w.endswith(lower) for w in _SINGULAR_UNCOUNTABLE
    ):
        return word
    for w in _SINGULAR_IE:
        if lower.endswith(w + "s"):
            return w
    for w, sing in _SINGULAR_IRREGULAR.items():
        if lower.endswith(w):
            return re.sub("(?i)" + w + "$", sing, word)
    for rule, repl in _SINGULAR_RULES:
        m = rule.search(word)
        if m:
            for k, g in enumerate(m.groups()):
                if g is None:  # pattern drops back-references to groups that did not take part
                    repl = repl.replace("\\" + str(k + 1), "")
            return rule.sub(repl, word)
    return word


# ---------------------------------------------------------------------------------------------------
# Synonym table and double words (the official CHAIR word tables)
# ---------------------------------------------------------------------------------------------------
DATA_DIR = Path(__file__).resolve().parent / "data"
SYNONYM_FILES = {"coco2018": "synonyms.txt", "objhal_refined": "synonyms_refine.txt"}

_DOUBLE_WORDS_2018 = [
    "motor bike", "motor cycle", "air plane", "traffic light", "street light", "traffic signal", "stop light",
    "fire hydrant", "stop sign", "parking meter", "suit case", "sports ball", "baseball bat", "baseball glove",
    "tennis racket", "wine glass", "hot dog", "cell phone", "mobile phone", "teddy bear", "hair drier",
    "potted plant", "bow tie", "laptop computer", "stove top oven", "home plate",
]
_ANIMALS = ["bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "animal", "cub"]


@lru_cache(maxsize=None)
def double_word_dict(pipeline: str) -> dict[str, str]:
    """The official 'double words' map; OPERA's chair.py adds 'train track' to the 2018 list."""
    words = _DOUBLE_WORDS_2018 + (["train track"] if pipeline == "opera" else [])
    d = {w: w for w in words}
    for a in _ANIMALS:
        d[f"baby {a}"] = d[f"adult {a}"] = a
    for v in ("jet", "train"):
        d[f"passenger {v}"] = v
    d.update({"bow tie": "tie", "toilet seat": "toilet", "wine glas": "wine glass"})
    return d


@dataclass(frozen=True)
class SynonymTable:
    """Parsed like the official code: each line `.strip().split(', ')`, first entry is the class.

    Entries are not stripped individually, so the 2018 list's " motor bike" and " cheesecake" (two spaces
    after the comma) never match, exactly as in the official scorers."""

    path: Path
    inverse: dict[str, str]

    @classmethod
    def load(cls, name_or_path: str | Path) -> "SynonymTable":
        path = Path(DATA_DIR / SYNONYM_FILES[name_or_path]) if name_or_path in SYNONYM_FILES else Path(name_or_path)
        if not path.is_file():
            raise DataError(f"synonym list not found (use {' or '.join(SYNONYM_FILES)} or a file path)", path=path)
        inverse: dict[str, str] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            entries = line.strip().split(", ")
            for e in entries:
                inverse[e] = entries[0]
        return cls(path, inverse)

    @property
    def classes(self) -> list[str]:
        return sorted({c for c in self.inverse.values() if c})
