#!/usr/bin/env python3
"""Expected values for lib/eval/metrics.cpp and lib/eval/rouge.cpp (tests/unit/test_eval_metrics.cpp).

Independent implementations:
  * ROUGE-1/2/L: Google's rouge-score (rouge_scorer.RougeScorer, use_stemmer True and False; score_multi).
  * Porter: NLTK's PorterStemmer() (default NLTK_EXTENSIONS mode, the one rouge-score calls).
  * Python twins written here from the documented definitions of: SQuAD v1.1 normalize_answer / EM / F1;
    TriviaQA's normalize_answer (LLM-KICK incontext_qa/utils/triviaqa_evaluation.py); LLM-KICK's
    validate_response (factoid_qa/main_freebase.py), exact_match_score and answer extraction
    (incontext_qa/main_icrqa.py), MMLU's `output[-1:]` letter and its subject/subcategory/category
    accuracy (multiple_choice_qa/main_mmlu.py with Hendrycks' categories.py); FastChat llm_judge's
    rating regexes and [[A]]/[[B]]/[[C]] verdicts (common.py); LLM-KICK's parse_score for the pairwise
    conversation judge and the four-line summary judge (gpt4_judge.py). These run on Python's own str
    semantics (Unicode lower(), split(), strip(), re's \\b and \\w), which is what the C++ must match.
  * kick's strict twins (factoid_match_strict, retrieval_em_strict, mmlu_letter_strict) have no outside
    reference; they are written here from their header documentation.

Cases: hand-written edge cases, FreebaseQA answers, NQ-open answers (non-ASCII, NBSP, dashes),
CNN/DailyMail highlights against article paragraphs, every distinct word of the CNN/DailyMail stories
for the stemmer, and a Unicode sweep (every boundary of Python's \\w ranges, every whitespace character,
every upper-case character str.lower() maps).

Run with the `python3` first on PATH (3.11) after `pip install rouge-score nltk`:
    python3 tests/reference/eval_metrics_reference.py            # writes tests/fixtures/eval/metrics_reference.json
    python3 tests/reference/eval_metrics_reference.py --cpp-tables   # prints the C++ Unicode tables of metrics.cpp
Data comes from $KICK_DATA (default ../shared/data next to the repository).
"""
import collections
import glob
import gzip
import json
import os
import random
import re
import string
import sys
import unicodedata

import nltk
import rouge_score
from nltk.stem.porter import PorterStemmer
from rouge_score import rouge_scorer

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
DATA = os.environ.get("KICK_DATA") or os.path.normpath(os.path.join(REPO, "..", "shared", "data"))
OUT = os.path.join(REPO, "tests", "fixtures", "eval", "metrics_reference.json")

# ---------------------------------------------------------------------------------------------- twins

SQUAD_PUNCT = frozenset(string.punctuation)
TRIVIAQA_PUNCT = frozenset(string.punctuation + "\u2018\u2019\u00b4`")
ARTICLES = re.compile(r"\b(a|an|the)\b")


def squad_normalize(text):
    lowered = text.lower()
    no_punct = "".join(ch for ch in lowered if ch not in SQUAD_PUNCT)
    return " ".join(ARTICLES.sub(" ", no_punct).split())


def triviaqa_normalize(text):
    lowered = text.replace("_", " ").lower()
    spaced = "".join(" " if ch in TRIVIAQA_PUNCT else ch for ch in lowered)
    return " ".join(ARTICLES.sub(" ", spaced).split()).strip()


NORMALIZERS = {"squad": squad_normalize, "triviaqa": triviaqa_normalize}


def token_f1(prediction, gold, normalize):
    p = normalize(prediction).split()
    g = normalize(gold).split()
    shared = sum((collections.Counter(p) & collections.Counter(g)).values())
    if shared == 0:
        return 0.0
    precision = 1.0 * shared / len(p)
    recall = 1.0 * shared / len(g)
    return (2 * precision * recall) / (precision + recall)


def best(values):
    return max(values) if values else 0.0


def factoid_normalize_llmkick(text):
    return text.strip().replace(" ", "").lower()


def factoid_match_llmkick(output, aliases):
    out = factoid_normalize_llmkick(output)
    return any(factoid_normalize_llmkick(a) in out for a in aliases)


def factoid_match_strict(generation, aliases):
    out = squad_normalize(generation).split()
    for alias in aliases:
        a = squad_normalize(alias).split()
        if a and any(out[i:i + len(a)] == a for i in range(len(out) - len(a) + 1)):
            return True
    return False


def retrieval_em_llmkick(prediction, gold):
    p, g = triviaqa_normalize(prediction), triviaqa_normalize(gold)
    return g in p or p in g


def retrieval_em_strict(prediction, gold):
    p = triviaqa_normalize(prediction)
    return p != "" and p == triviaqa_normalize(gold)


def first_line_answer(generation):
    return generation.strip().split("\n")[0]


def mmlu_letter_llmkick(generation):
    last = ("...\nAnswer:" + generation)[-1:]
    return last if last in "ABCD" else None


def mmlu_letter_strict(generation):
    rest = generation.lstrip()
    if not rest or rest[0] not in "ABCDabcd":
        return None
    if len(rest) > 1 and rest[1].isalnum():
        return None
    return rest[0].upper()


# FastChat llm_judge/common.py patterns, as documented there.
ONE_SCORE = re.compile(r"\[\[(\d+\.?\d*)\]\]")
ONE_SCORE_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")


def judge_rating(reply):
    match = ONE_SCORE.search(reply) or ONE_SCORE_BACKUP.search(reply)
    return float(match.group(1)) if match else None


def judge_verdict(reply):
    for token, verdict in (("[[A]]", "A"), ("[[B]]", "B"), ("[[C]]", "tie")):
        if token in reply:
            return verdict
    return None


def judge_pair_llmkick(reply):
    fields = reply.split("\n")[0].replace(",", " ").split(" ")
    if len(fields) != 2:
        return None
    try:
        return [float(fields[0]), float(fields[1])]
    except ValueError:
        return None


SUMMARY_ASPECTS = ["coherence", "consistent", "fluency", "relevance"]


def judge_summary_llmkick(reply):
    lines = reply.split("\n")
    try:
        out = {}
        for i, aspect in enumerate(SUMMARY_ASPECTS):
            fields = lines[i].split(" ")
            out[aspect] = [float(fields[0]), float(fields[1])]
        return out
    except (IndexError, ValueError):
        return None


# Hendrycks test/categories.py.
MMLU_SUBCATEGORIES = {
    "abstract_algebra": "math", "anatomy": "health", "astronomy": "physics", "business_ethics": "business",
    "clinical_knowledge": "health", "college_biology": "biology", "college_chemistry": "chemistry",
    "college_computer_science": "computer science", "college_mathematics": "math", "college_medicine": "health",
    "college_physics": "physics", "computer_security": "computer science", "conceptual_physics": "physics",
    "econometrics": "economics", "electrical_engineering": "engineering", "elementary_mathematics": "math",
    "formal_logic": "philosophy", "global_facts": "other", "high_school_biology": "biology",
    "high_school_chemistry": "chemistry", "high_school_computer_science": "computer science",
    "high_school_european_history": "history", "high_school_geography": "geography",
    "high_school_government_and_politics": "politics", "high_school_macroeconomics": "economics",
    "high_school_mathematics": "math", "high_school_microeconomics": "economics", "high_school_physics": "physics",
    "high_school_psychology": "psychology", "high_school_statistics": "math", "high_school_us_history": "history",
    "high_school_world_history": "history", "human_aging": "health", "human_sexuality": "culture",
    "international_law": "law", "jurisprudence": "law", "logical_fallacies": "philosophy",
    "machine_learning": "computer science", "management": "business", "marketing": "business",
    "medical_genetics": "health", "miscellaneous": "other", "moral_disputes": "philosophy",
    "moral_scenarios": "philosophy", "nutrition": "health", "philosophy": "philosophy", "prehistory": "history",
    "professional_accounting": "other", "professional_law": "law", "professional_medicine": "health",
    "professional_psychology": "psychology", "public_relations": "politics", "security_studies": "politics",
    "sociology": "culture", "us_foreign_policy": "politics", "virology": "health", "world_religions": "philosophy",
}
MMLU_CATEGORIES = {
    "STEM": ["physics", "chemistry", "biology", "computer science", "math", "engineering"],
    "humanities": ["history", "philosophy", "law"],
    "social sciences": ["politics", "culture", "economics", "geography", "psychology"],
    "other (business, health, misc.)": ["other", "business", "health"],
}


def mmlu_aggregate(results):
    """main_mmlu.py's bookkeeping: per-subject lists, concatenated per subcategory and category."""
    per_subject = collections.OrderedDict()
    for subject, correct in results:
        per_subject.setdefault(subject, []).append(bool(correct))
    subcat, cat, everything = {}, {}, []
    for subject, cors in per_subject.items():
        sub = MMLU_SUBCATEGORIES[subject]
        subcat.setdefault(sub, []).extend(cors)
        for name, members in MMLU_CATEGORIES.items():
            if sub in members:
                cat.setdefault(name, []).extend(cors)
        everything.extend(cors)

    def cell(cors):
        return [sum(cors), len(cors)]

    accuracies = [sum(c) / len(c) for c in per_subject.values()]
    return {
        "per_subject": {k: cell(v) for k, v in per_subject.items()},
        "per_subcategory": {k: cell(v) for k, v in subcat.items()},
        "per_category": {k: cell(v) for k, v in cat.items()},
        "overall": cell(everything),
        "macro_subjects": sum(accuracies) / len(accuracies) if accuracies else 0.0,
    }


# ---------------------------------------------------------------------------------------------- cases

def hand_qa_cases():
    # (prediction, golds)
    return [
        ("The Beatles", ["the beatles", "Beatles"]),
        ("  a  ", ["a"]),
        ("", ["Paris"]),
        ("Paris", [""]),
        ("", [""]),
        ("Paris", []),
        ("It\u2019s Paris", ["its paris", "it s paris"]),
        ("\u2018Paris\u2019", ["paris"]),
        ("rock \u00b4n\u00b4 roll", ["rock n roll"]),
        ("`quoted` text", ["quoted text"]),
        ("New_York", ["new york", "newyork"]),
        ("the_end", ["end", "theend"]),
        ("1,000", ["1000", "1 000"]),
        ("3.14", ["314", "3 14"]),
        ("the the cat cat cat", ["cat"]),
        ("cat dog", ["dog cat"]),
        ("Barack Obama", ["Obama", "President Barack Obama", "Michelle"]),
        ("An apple a day", ["apple day"]),
        ("THE END", ["end"]),
        ("theater another thea", ["theater another thea"]),
        ("a.b.c", ["abc", "b c"]),
        ("The A-Team", ["ateam", "team", "a team"]),
        ("well-known", ["wellknown", "well known"]),
        ("U.S.A.", ["USA", "u s"]),
        ("l'amour", ["lamour", "l amour"]),
        ("!!!", [""]),
        ("...the...", [""]),
        ("tab\tand\nnewline  runs", ["tab and newline runs"]),
        ("R\u00f6ntgen", ["Wilhelm Conrad R\u00f6ntgen"]),
        ("\u00c9MILE ZOLA", ["\u00e9mile zola"]),
        ("\u00c9mile Zola", ["emile zola"]),
        ("\u201cThe Godfather\u201d", ["the godfather", "\u201c godfather\u201d"]),
        ("\u201cthe godfather\u201d", ["godfather"]),
        ("the\u2014end", ["end", "\u2014"]),
        ("New\u00a0York", ["new york"]),
        ("age\u00a044", ["age 44"]),
        ("2\u00a0September\u00a01945", ["2 September 1945"]),
        ("2001\u20132002 season", ["the 2001\u20132002 season"]),
        ("the\u2009thin\u2009space", ["thin space"]),
        ("\u3000Tokyo\u3000", ["tokyo"]),
        ("\u6771\u4eac", ["\u6771\u4eac"]),
        ("\u041c\u041e\u0421\u041a\u0412\u0410", ["\u043c\u043e\u0441\u043a\u0432\u0430"]),
        ("\u0391\u0398\u0397\u039d\u0391", ["\u03b1\u03b8\u03b7\u03bd\u03b1"]),
        ("the\u0301 end", ["\u0301 end", "end"]),
        ("the\u200bend", ["end"]),
        ("the \U0001f389 party", ["party", "\U0001f389 party"]),
        ("\u0130STANBUL", ["istanbul", "i\u0307stanbul"]),
        ("\u212aelvin", ["kelvin"]),
        ("Stra\u00dfe", ["strasse", "stra\u00dfe"]),
        ("caf\u00e9 the", ["cafe", "caf\u00e9"]),
        ("\u00bd cup", ["cup"]),
        ("the\u00b2 a\u2075", ["the\u00b2 a\u2075"]),
        ("\u2160 Corps", ["\u2170 corps"]),
        ("x\u00d7y", ["x y", "x\u00d7y"]),
        ("the\u2026", ["\u2026"]),
        ("\u00abthe\u00bb", ["\u00ab \u00bb"]),
        ("\u00a1the!", ["\u00a1"]),
        ("the\u00adend", ["end"]),
        ("\ufeffthe end", ["end"]),
        ("the\u2028end", ["end"]),
        ("the\x1cend", ["end"]),
        ("the\x85end", ["end"]),
        ("a an the", [""]),
        ("aN tHe A", [""]),
        ("The answer is the Eiffel Tower.", ["Eiffel Tower", "the tower"]),
    ]


def hand_factoid_cases():
    # (prompt, generation, aliases)
    p = "Please give answer to this question: {}\nThe answer is "
    return [
        (p.format("Which city hosts the Eiffel Tower?"), "Paris.", ["paris"]),
        (p.format("Which city hosts the Eiffel Tower?"), "I do not know.", ["eiffel tower"]),
        (p.format("Who wrote Hamlet?"), "unknown", [""]),
        (p.format("Who wrote Hamlet?"), "unknown", ["  "]),
        (p.format("Name the big apple"), "NewYork", ["new york"]),
        (p.format("Name the big apple"), "new\tyork", ["new york"]),
        (p.format("Name the big apple"), "new\u00a0york", ["new york"]),
        (p.format("Who wrote Germinal?"), "\u00c9MILE ZOLA", ["\u00e9mile zola"]),
        (p.format("Which river?"), "the Nile", ["\u00a0nile\u00a0"]),
        (p.format("Which river?"), "the Nile", []),
        (p.format("Which river?"), "", ["nile"]),
        (p.format("Name a band"), "The Beatles", ["the beatles", "beatles"]),
        (p.format("Name a band"), "Beatles", ["the beatles"]),
        (p.format("Name a band"), "the_beatles", ["the beatles"]),
        (p.format("Which year?"), "It was 1,984", ["1984"]),
        (p.format("Which year?"), "It was 1984", ["1,984"]),
        (p.format("Which planet?"), "\u201cMars\u201d", ["mars"]),
        (p.format("Which planet?"), "Marsupial", ["mars"]),
    ]


def hand_rouge_cases():
    # (prediction, reference)
    return [
        ("", ""),
        ("", "the cat sat"),
        ("the cat sat", ""),
        ("!!! ???", "the cat"),
        ("cat", "cat"),
        ("the cat sat on the mat", "the cat sat on the mat"),
        ("the cat sat on the mat", "the mat sat on the cat"),
        ("cat cat cat cat", "cat the cat"),
        ("running runs ran runner", "run running runs"),
        ("The Universities' generalizations were operational", "university generalize operate"),
        ("ies ied ing sky skies dying lying", "sky die lie"),
        ("2,000 people; 3.5 percent", "2000 people 3 5 percent"),
        ("Don't stop-believing!", "don t stop believing"),
        ("caf\u00e9 na\u00efve r\u00e9sum\u00e9", "caf na ve r sum"),
        ("\u0130stanbul \u212aelvin", "i stanbul kelvin"),
        ("MIXED Case TOKENS", "mixed case tokens"),
        ("under_score and-dash", "under score and dash"),
        ("\u6771\u4eac tokyo", "tokyo"),
        ("a b c d e f g", "g f e d c b a"),
        ("the quick brown fox jumps over the lazy dog", "a quick brown dog jumps over a lazy fox"),
        ("possibly probably presumably", "possible probable presume"),
        ("connection connections connective connected connecting", "connect"),
        ("yyyy yyyyy syzygy", "yyyy syzygi"),
    ]


def hand_rouge_multi_cases():
    return [
        ("the cat sat", ["a dog ran", "the cat sat", "the cat"]),
        ("the cat sat", ["", "cat"]),
        ("the cat sat", ["cat sat", "the cat"]),  # a tie: the first maximum wins (np.argmax)
        ("", ["a", "b"]),
        ("police arrested two men", ["Two men were arrested by police", "Police arrest suspects", "men"]),
    ]


def judge_replies():
    rating = [
        "Rating: [[8]]", "[[8.5]]", "[[10]] and later [[3]]", "My verdict [8]", "[[ 8 ]]", "[[8.]]", "[[.5]]",
        "[[A]] then [7]", "", "The score is 8", "[[1.2.3]]", "[x] [[6]]", "[7] then [[6]]", "[[10]]", "[9.25]",
        "Rating: [[3]].\nExplanation [[4]]", "[[-2]]", "[[2]", "[[ [5]]", "Rating:\n[[7]]",
    ]
    verdict = ["[[A]]", "[[B]]", "[[C]]", "final: [[B]] but earlier [[A]]", "[[a]]", "", "[A]", "[[C]] [[B]]",
               "Verdict: [[Tie]]", "[[[B]]]"]
    pair = [
        "8 9", "8,9", "8, 9", "8 9\nAssistant 1 was better", "8.5 7", " 8 9", "8 9 ", "8\t9", "10 1_0", "inf 3",
        "1e1 2E-1", "+3 -4", "3. .5", "0x10 2", "1__0 2", "_1 2", "1_ 2", "8 9\r\nmore", "error", "", "8", "8 9 10",
        "\u00a08\u00a0 9", "Infinity -INF", "1e400 1e-400", "- 5 6", "5e 6", ".e1 2", "007 08",
    ]
    summary = [
        "8 9\n7 6\n9 9\n8 7",
        "8 9 because it is coherent\n7 6 reasons\n9 9\n8 7 fine",
        "8,9\n7 6\n9 9\n8 7",
        "8 9\n7 6\n9 9",
        "8 9\n\n7 6\n9 9\n8 7",
        "8 9\n7 6\n9 9\n8 7\nextra commentary",
        " 8 9\n7 6\n9 9\n8 7",
        "8  9\n7 6\n9 9\n8 7",
        "8 9\n7 6\n9 9\n8",
        "8.5 9.0\n7 6.25\n9 9\n8 7\r",
        "8\t9\n7 6\n9 9\n8 7",
        "",
    ]
    return rating, verdict, pair, summary


MMLU_GENERATIONS = ["A", " B", "C\n", "D", "E", "", " ", "a", "b)", " B.", "Because", "C)", "\nD", "Answer: A",
                    " A B", "AB", "D1", "D-", "  c", "\u00c1", "A\u00e9", "B\u3000"]


# ---------------------------------------------------------------------------------------------- data

def read_freebaseqa():
    questions = collections.OrderedDict()
    with open(os.path.join(DATA, "freebaseqa", "FreebaseQA-eval.txt"), encoding="utf-8") as f:
        for line in f:
            if " | " not in line:
                continue
            question, answer = line.rstrip("\n").rsplit(" | ", 1)
            questions.setdefault(question, []).append(answer.strip())
    return list(questions.items())


def read_nq_open():
    with gzip.open(os.path.join(DATA, "retrieval_qa", "nq-open-oracle.jsonl.gz"), "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def read_stories():
    stories = []
    for path in sorted(glob.glob(os.path.join(DATA, "cnn_dailymail", "*", "*.story"))):
        with open(path, encoding="utf-8") as f:
            blocks = [b.strip() for b in f.read().split("\n\n") if b.strip()]
        paragraphs, highlights, in_highlight = [], [], False
        for block in blocks:
            if block == "@highlight":
                in_highlight = True
            elif in_highlight:
                highlights.append(block)
                in_highlight = False
            else:
                paragraphs.append(block)
        stories.append((os.path.relpath(path, DATA), paragraphs, highlights))
    return stories


def qa_predictions(rng, answer, other):
    words = answer.split()
    return [
        answer,
        answer.upper(),
        f"The answer is {answer}.",
        f"the {answer}",
        words[0] if words else "",
        f"I think it is {other}",
        f"{answer} and {other}",
        "",
        answer.replace(" ", "_"),
        f"\u201c{answer.title()}\u201d",
    ][rng.randrange(10)]


# ---------------------------------------------------------------------------------------------- unicode

def python_word_ranges():
    ranges, start = [], None
    for cp in range(0x110001):
        ok = cp < 0x110000 and (chr(cp).isalnum() or cp == 0x5F)
        if ok and start is None:
            start = cp
        if not ok and start is not None:
            ranges.append((start, cp - 1))
            start = None
    return ranges


def python_lower_runs():
    """Single-code-point lower() mappings as runs (first, count, stride, delta)."""
    runs = []
    for cp in range(0x110000):
        low = chr(cp).lower()
        if len(low) != 1 or ord(low) == cp:
            continue
        delta = ord(low) - cp
        if runs:
            first, count, stride, d = runs[-1]
            last = first + (count - 1) * stride
            if d == delta and ((count == 1 and cp - last in (1, 2)) or (count > 1 and cp - last == stride)):
                runs[-1] = (first, count + 1, cp - last, d)
                continue
        runs.append((cp, 1, 1, delta))
    return runs


PYTHON_SPACES = [cp for cp in range(0x110000) if chr(cp).isspace()]


def check_unicode_assumptions():
    """The C++ relies on these facts about Python 3.11 (Unicode 14.0); fail loudly if they change."""
    assert all(bool(re.match(r"\w", chr(cp))) == (chr(cp).isalnum() or cp == 0x5F) for cp in range(0x110000))
    assert all(("a" + chr(cp) + "b").split() == (["a", "b"] if chr(cp).isspace() else ["a" + chr(cp) + "b"])
               for cp in range(0x110000))
    multi = [cp for cp in range(0x110000) if len(chr(cp).lower()) != 1]
    assert multi == [0x130], multi
    to_ascii = [cp for cp in range(0x80, 0x110000) if re.search(r"[a-z0-9]", chr(cp).lower())]
    assert to_ascii == [0x130, 0x212A], to_ascii  # rouge-score's [a-z0-9] after lower()


def unicode_sweep():
    """Code points around every edge of \\w, every whitespace, and every upper-case mapping."""
    cps = set(PYTHON_SPACES) | {0x200B, 0xFEFF, 0x180E, 0x00AD, 0x0301, 0x0307}
    for first, last in python_word_ranges():
        cps.update({first - 1, first, last, last + 1})
    cps = sorted(cp for cp in cps if 0x80 <= cp < 0x110000 and not 0xD800 <= cp <= 0xDFFF and cp != 0x3A3)
    # "the{c}an": c in \w keeps one word; c outside \w frees both articles; c as whitespace leaves nothing.
    # The probes are space-separated, so each is normalised on its own; chunks keep a failure readable.
    word_probes = []
    for i in range(0, len(cps), 64):
        text = " ".join("the" + chr(cp) + "an" for cp in cps[i:i + 64])
        squad, triviaqa = squad_normalize(text), triviaqa_normalize(text)
        word_probes.append([text, squad, None if triviaqa == squad else triviaqa])
    uppers = "".join(chr(cp) for cp in range(0x80, 0x110000)
                     if chr(cp).lower() != chr(cp) and not 0xD800 <= cp <= 0xDFFF)
    # Final sigma (U+03A3 at the end of a word lowers to U+03C2 in Python) is left out: kick documents it
    # as a departure. Inside this run every capital sigma is followed by another capital.
    assert not uppers.endswith("\u03a3")
    lowered = uppers.lower()
    # No punctuation, whitespace or article among them: every normaliser reduces to lower().
    assert squad_normalize(uppers) == triviaqa_normalize(uppers) == factoid_normalize_llmkick(uppers) == lowered
    return {
        "word_probes": word_probes,
        "uppers": uppers,
        "uppers_lower": lowered,
    }


def emit_cpp_tables():
    ranges = python_word_ranges()
    non_ascii = [r for r in ranges if r[1] >= 0x80]
    print(f"// {len(non_ascii)} ranges of Python's re \\w (str.isalnum() or '_') above U+007F, Unicode "
          f"{unicodedata.unidata_version}.")
    items = [f"{{0x{a:X}, 0x{b:X}}}" for a, b in non_ascii]
    line = " "
    for item in items:
        if len(line) + len(item) + 2 > 118:
            print(line.rstrip())
            line = " "
        line += " " + item + ","
    print(line.rstrip())
    runs = python_lower_runs()
    print(f"// {len(runs)} runs of str.lower(): (first, count, stride, delta).")
    items = [f"{{0x{a:X}, {c}, {s}, {d}}}" for a, c, s, d in runs]
    line = " "
    for item in items:
        if len(line) + len(item) + 2 > 118:
            print(line.rstrip())
            line = " "
        line += " " + item + ","
    print(line.rstrip())
    print("// whitespace: " + ", ".join(f"0x{cp:X}" for cp in PYTHON_SPACES))


# ---------------------------------------------------------------------------------------------- main

def rouge_triple(score):
    return [score.precision, score.recall, score.fmeasure]


def rouge_entry(prediction, references, scorers):
    entry = {"prediction": prediction}
    multi = isinstance(references, list)
    entry["references" if multi else "reference"] = references
    for name, scorer in scorers.items():
        scores = scorer.score_multi(references, prediction) if multi else scorer.score(references, prediction)
        entry[name] = {k: rouge_triple(v) for k, v in scores.items()}
    return entry


def as_repr(value):
    """Floats as repr() strings, so inf and subnormals survive JSON."""
    if value is None:
        return None
    if isinstance(value, dict):
        return {k: as_repr(v) for k, v in value.items()}
    return [repr(v) for v in value]


def _stem_or_same(stemmer, word):
    """'=' where the stem is the word itself (a stem is never '='), to keep the fixture small."""
    stem = stemmer.stem(word)
    return "=" if stem == word else stem


def main():
    if "--cpp-tables" in sys.argv:
        emit_cpp_tables()
        return
    check_unicode_assumptions()
    rng = random.Random(20240601)

    # ---- QA pairs: hand cases, FreebaseQA answers, NQ-open answers.
    qa_inputs = list(hand_qa_cases())
    freebase = read_freebaseqa()
    for question, answers in rng.sample(freebase, 55):
        other = rng.choice(freebase)[1][0]
        qa_inputs.append((qa_predictions(rng, rng.choice(answers), other), answers))
    nq = read_nq_open()
    non_ascii = [r for r in nq if any(ord(c) > 127 for a in r["answers"] for c in a)]
    for row in rng.sample(non_ascii, 30) + rng.sample(nq, 20):
        answers = row["answers"]
        other = rng.choice(nq)["answers"][0]
        choice = rng.randrange(3)
        if choice == 0:
            prediction = qa_predictions(rng, rng.choice(answers), other)
        elif choice == 1:
            prediction = " ".join(row["ctxs"][0]["text"].split(" ")[:8])
        else:
            prediction = "\n " + rng.choice(answers) + "\nQ: next question"
        qa_inputs.append((prediction, answers))
    qa = []
    for prediction, golds in qa_inputs:
        entry = {"prediction": prediction, "golds": golds}
        for name, normalize in NORMALIZERS.items():
            entry[f"normalized_{name}"] = normalize(prediction)
            entry[f"em_{name}"] = best([1.0 if normalize(prediction) == normalize(g) else 0.0 for g in golds])
            entry[f"f1_{name}"] = best([token_f1(prediction, g, normalize) for g in golds])
        entry["retrieval_em_llmkick"] = best([1.0 if retrieval_em_llmkick(prediction, g) else 0.0 for g in golds])
        entry["retrieval_em_strict"] = best([1.0 if retrieval_em_strict(prediction, g) else 0.0 for g in golds])
        entry["factoid_strict"] = factoid_match_strict(prediction, golds)
        entry["factoid_llmkick"] = factoid_match_llmkick(prediction, golds)
        entry["factoid_normalized_llmkick"] = factoid_normalize_llmkick(prediction)
        if first_line_answer(prediction) != prediction:  # left out when it is the prediction itself
            entry["first_line_answer"] = first_line_answer(prediction)
        qa.append(entry)

    # ---- factoid, with the reference's prompt + generation as the scored output.
    factoid_inputs = list(hand_factoid_cases())
    for question, answers in rng.sample(freebase, 40):
        prompt = f"Please give answer to this question: {question}\nThe answer is "
        other = rng.choice(freebase)[1][0]
        factoid_inputs.append((prompt, qa_predictions(rng, rng.choice(answers), other), answers))
    factoid = []
    for prompt, generation, aliases in factoid_inputs:
        factoid.append({
            "prompt": prompt, "generation": generation, "aliases": aliases,
            "llmkick": factoid_match_llmkick(prompt + generation, aliases),
            "llmkick_generation_only": factoid_match_llmkick(generation, aliases),
            "strict": factoid_match_strict(generation, aliases),
        })

    # ---- ROUGE: hand cases and CNN/DailyMail.
    scorers = {
        "stem": rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True),
        "nostem": rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False),
    }
    rouge = [rouge_entry(p, r, scorers) for p, r in hand_rouge_cases()]
    rouge_multi = [rouge_entry(p, r, scorers) for p, r in hand_rouge_multi_cases()]
    stories = read_stories()
    distinct = collections.OrderedDict()
    for _, paragraphs, highlights in stories:
        distinct.setdefault(tuple(highlights), (paragraphs, highlights))
    distinct = list(distinct.values())
    for paragraphs, highlights in rng.sample(distinct, 25):
        rouge.append(rouge_entry(paragraphs[0], "\n".join(highlights), scorers))
    for paragraphs, highlights in rng.sample(distinct, 25):
        rouge.append(rouge_entry(rng.choice(paragraphs), rng.choice(highlights), scorers))
    for paragraphs, highlights in rng.sample(distinct, 15):
        rouge_multi.append(rouge_entry(rng.choice(highlights[:1] + paragraphs[:3]), highlights, scorers))

    # ---- Porter: every distinct rouge token of the stories, plus hand words (mixed case included).
    stemmer = PorterStemmer()
    words = collections.OrderedDict()
    for _, paragraphs, highlights in stories:
        for block in paragraphs + highlights:
            for token in re.sub(r"[^a-z0-9]+", " ", block.lower()).split():
                words.setdefault(token, None)
    hand_words = ["a", "y", "ys", "yy", "yyyy", "syzygy", "ies", "ied", "ing", "eed", "feed", "agreed", "sky",
                  "skies", "Skies", "DYING", "Running", "caresses", "ponies", "ties", "caress", "cats", "plastered",
                  "bled", "motoring", "sing", "conflated", "troubled", "sized", "hopping", "tanned", "falling",
                  "hissing", "fizzed", "failing", "filing", "happy", "enjoy", "relational", "conditional",
                  "rational", "valenci", "hesitanci", "digitizer", "conformabli", "radicalli", "differentli",
                  "vileli", "analogousli", "vietnamization", "predication", "operator", "feudalism", "decisiveness",
                  "hopefulness", "callousness", "formaliti", "sensitiviti", "sensibiliti", "triplicate",
                  "formative", "formalize", "electriciti", "electrical", "hopeful", "goodness", "revival",
                  "allowance", "inference", "airliner", "gyroscopic", "adjustable", "defensible", "irritant",
                  "replacement", "adjustment", "dependent", "adoption", "homologou", "communism", "activate",
                  "angulariti", "homologous", "effective", "bowdlerize", "probate", "rate", "cease", "controll",
                  "roll", "generically", "archaeology", "analogi", "fully", "hopefulli", "innings", "outings",
                  "cannings", "howe", "proceed", "exceed", "succeed", "news", "tying", "lying", "oed", "aed", "at",
                  "is", "us", "xyz", "bly", "fly", "spied", "tried", "flies", "ABLE", "MiXeD"]
    for word in hand_words:
        words.setdefault(word, None)
    word_list = list(words)
    assert all(" " not in w for w in word_list)

    # ---- MMLU.
    subjects = sorted(f[: -len("_test.csv")] for f in os.listdir(os.path.join(DATA, "mmlu", "test"))
                      if f.endswith("_test.csv"))
    aggregates = []
    for subject_count in (1, 5, 57):
        chosen = rng.sample(subjects, subject_count)
        results = []
        for _ in range(subject_count * 7):
            results.append([rng.choice(chosen), rng.random() < 0.4])
        aggregates.append({"results": results, **mmlu_aggregate(results)})
    mmlu = {
        "subjects": subjects,
        "subcategories": MMLU_SUBCATEGORIES,
        "categories": {s: next(c for c, subs in MMLU_CATEGORIES.items() if MMLU_SUBCATEGORIES[s] in subs)
                       for s in subjects},
        "aggregates": aggregates,
        "letters": [{"generation": g, "llmkick": mmlu_letter_llmkick(g), "strict": mmlu_letter_strict(g)}
                    for g in MMLU_GENERATIONS],
    }

    rating, verdict, pair, summary = judge_replies()
    judge = {
        "rating": [{"reply": r, "value": judge_rating(r)} for r in rating],
        "verdict": [{"reply": r, "value": judge_verdict(r)} for r in verdict],
        "pair": [{"reply": r, "value": as_repr(judge_pair_llmkick(r))} for r in pair],
        "summary": [{"reply": r, "value": as_repr(judge_summary_llmkick(r))} for r in summary],
    }

    fixture = {
        "generator": "tests/reference/eval_metrics_reference.py",
        "versions": {"python": sys.version.split()[0], "unicode": unicodedata.unidata_version,
                     "rouge_score": getattr(rouge_score, "__version__", "0.1.2"), "nltk": nltk.__version__},
        "qa": qa,
        "factoid": factoid,
        "rouge": rouge,
        "rouge_multi": rouge_multi,
        "porter": {"words": " ".join(word_list), "stems": " ".join(_stem_or_same(stemmer, w) for w in word_list),
                   "empty": stemmer.stem("")},
        "unicode": unicode_sweep(),
        "mmlu": mmlu,
        "judge": judge,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT}: {os.path.getsize(OUT)} bytes; {len(qa)} qa, {len(factoid)} factoid, {len(rouge)} rouge, "
          f"{len(rouge_multi)} rouge_multi, {len(word_list)} words, "
          f"{len(fixture['unicode']['word_probes'])} unicode probe chunks")


if __name__ == "__main__":
    main()
