#!/usr/bin/env python3
"""Independent twin of lib/eval/datasets.cpp for the [eval-data] tests.

Reads the evaluation data in ../shared/data (or $KICK_DATA) with Python's own csv, gzip and json modules and
writes per-file row counts, answer counts, first/last questions and FNV-1a 64 digests of every loaded field to
tests/fixtures/eval/data_reference.json; the C++ test recomputes the same digests from kick's loaders.
It also writes the small gzip fixtures the gzip/NQ-open tests read (deterministic: mtime 0).

Digest serialisation (mirrored in tests/unit/test_eval_data.cpp): each field of a record is written followed
by 0x1f; a list field is its items, each followed by 0x1d, then 0x1f; each record ends with 0x1e; the digest
is the standard FNV-1a 64 (offset basis 0xcbf29ce484222325) of the UTF-8 bytes, as 16 lower-case hex
digits.

Usage: python3 tests/reference/eval_data_reference.py
"""
import collections
import csv
import gzip
import json
import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("KICK_DATA") or (REPO.parent / "shared" / "data"))
FIXTURES = REPO / "tests" / "fixtures" / "eval"


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


class Digest:
    def __init__(self):
        self.parts = []

    def record(self, *fields):
        for f in fields:
            if isinstance(f, list):
                for item in f:
                    self.parts.append(item)
                    self.parts.append("\x1d")
            else:
                self.parts.append(f)
            self.parts.append("\x1f")
        self.parts.append("\x1e")

    def hex(self):
        return fnv1a64("".join(self.parts).encode("utf-8"))


def unique(items):
    return list(dict.fromkeys(items))


# ------------------------------------------------------------------------------------------- MMLU
def mmlu_file(path: Path):
    digest = Digest()
    answers = collections.Counter()
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.reader(f):
            if not row:
                continue  # blank line (pandas skips them too)
            assert len(row) == 6, (path, row)
            assert row[5] in ("A", "B", "C", "D"), (path, row)
            rows.append(row)
    for row in rows:
        digest.record(*row)
        answers[row[5]] += 1
    return {
        "rows": len(rows),
        "answers": {k: answers[k] for k in "ABCD"},
        "first_question": rows[0][0],
        "last_question": rows[-1][0],
        "multiline_rows": sum(1 for r in rows if any("\n" in x for x in r)),
        "bytes": sum(len(x.encode("utf-8")) for r in rows for x in r),
        "digest": digest.hex(),
    }


def mmlu():
    files = {}
    totals = {"dev": 0, "test": 0, "test_answers": collections.Counter(), "subjects": 0}
    for split in ("dev", "test"):
        for path in sorted((DATA / "mmlu" / split).glob(f"*_{split}.csv")):
            info = mmlu_file(path)
            files[f"{split}/{path.name}"] = info
            totals[split] += info["rows"]
            if split == "test":
                totals["subjects"] += 1
                totals["test_answers"].update(info["answers"])
    totals["test_answers"] = {k: totals["test_answers"][k] for k in "ABCD"}
    return files, totals


# ------------------------------------------------------------------------------------------- FreebaseQA .txt
QUOTED = re.compile(r'"((?:[^"]|"")*)"')


def freebaseqa_txt(path: Path):
    questions = {}  # question -> aliases (dicts keep insertion order)
    pairs = unquoted = 0
    with open(path, encoding="utf-8", newline="") as f:
        for line in f.read().split("\n"):
            line = line.rstrip("\r")
            if not line.strip():
                continue
            question, answer = line.rsplit(" | ", 1)
            m = QUOTED.fullmatch(question)
            if m:
                question = m.group(1).replace('""', '"')
                unquoted += 1
            pairs += 1
            questions.setdefault(question, []).append(answer.rstrip())
    digest = Digest()
    aliases = 0
    for question, answers in questions.items():
        answers = unique(answers)
        aliases += len(answers)
        digest.record(question, answers)
    keys = list(questions)
    return {
        "pairs": pairs,
        "questions": len(questions),
        "aliases": aliases,
        "unquoted_lines": unquoted,
        "first_question": keys[0],
        "last_question": keys[-1],
        "digest": digest.hex(),
    }


# ------------------------------------------------------------------------------------------- NQ-open
def nq_open(path: Path):
    digest = Digest()
    rows = gold = answers = 0
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            rows += 1
            golds = unique(row["answers"])
            answers += len(golds)
            ctx_fields = []
            for ctx in row["ctxs"]:
                ctx_fields += [ctx["title"], ctx["text"], "gold" if ctx.get("isgold", False) else "retrieved"]
                gold += bool(ctx.get("isgold", False))
            digest.record(row["question"], golds, ctx_fields)
    return {"rows": rows, "gold_passages": gold, "answers": answers, "digest": digest.hex()}


# ------------------------------------------------------------------------------------------- CNN/DailyMail
def story(path: Path):
    with open(path, encoding="utf-8") as f:  # universal newlines, as LLM-KICK's generate_question.py reads
        raw = f.readlines()
    lines = [x[:-1] if x.endswith("\n") else x for x in raw]  # readlines() already turned \r\n and \r into \n
    paragraphs, highlights = [], []
    in_highlights = False
    for x in lines:
        x = x.strip()
        if not x:
            continue
        if x.startswith("@highlight"):
            in_highlights = True
        elif in_highlights:
            highlights.append(x)
        else:
            paragraphs.append(x)
    return lines, paragraphs, highlights


def cnn_dailymail():
    out = {}
    for bucket in ("small", "mid", "large"):
        digest = Digest()
        paragraphs = highlights = 0
        files = sorted((DATA / "cnn_dailymail" / bucket).glob("*.story"), key=lambda p: p.name)
        for path in files:
            lines, paras, highs = story(path)
            paragraphs += len(paras)
            highlights += len(highs)
            digest.record(path.stem, paras, highs, lines)
        out[bucket] = {"stories": len(files), "paragraphs": paragraphs, "highlights": highlights,
                       "first_id": files[0].stem, "digest": digest.hex()}
    return out


# ------------------------------------------------------------------------------------------- instructions
def instructions(path: Path, multi_turn: bool):
    digest = Digest()
    categories = collections.Counter()
    rows = turns = with_reference = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            rows += 1
            categories[row["category"]] += 1
            row_turns = row["turns"] if multi_turn else [row["text"]]
            reference = row.get("reference", []) if multi_turn else []
            turns += len(row_turns)
            with_reference += "reference" in row
            digest.record(str(row["question_id"]), row["category"], row_turns, reference)
    return {"rows": rows, "turns": turns, "with_reference": with_reference,
            "categories": dict(sorted(categories.items())), "digest": digest.hex()}


# ------------------------------------------------------------------------------------------- gzip fixtures
NQ_FIXTURE_ROWS = [
    {"question": "who wrote the hobbit", "answers": ["J. R. R. Tolkien", "Tolkien", "Tolkien"],
     "ctxs": [{"title": "The Hobbit", "text": "The Hobbit is a children's fantasy novel by J. R. R. Tolkien.",
               "hasanswer": True, "isgold": True}],
     "nq_annotated_gold": {"title": "The Hobbit"}},
    {"question": "capital of t\u00fcrkiye", "answers": ["Ankara"],
     "ctxs": [{"title": "Ankara", "text": "Ankara is the capital of T\u00fcrkiye.", "hasanswer": True, "isgold": True},
              {"title": "Istanbul", "text": "Istanbul is its largest city.", "hasanswer": False, "isgold": False}]},
    {"question": "how many legs does a spider have", "answers": ["eight", "8"],
     "ctxs": [{"title": "Spider", "text": "Spiders have eight legs.", "isgold": True}]},
]


def write_gzip_fixtures():
    lines = [json.dumps(r) + "\n" for r in NQ_FIXTURE_ROWS]
    text = "".join(lines).encode("utf-8")
    (FIXTURES / "data_nq_small.jsonl.gz").write_bytes(gzip.compress(text, mtime=0))
    # The same rows in two gzip members (the second starts mid-file), which `gzip -c a b > c` produces.
    first = "".join(lines[:1]).encode("utf-8")
    rest = "".join(lines[1:]).encode("utf-8")
    (FIXTURES / "data_nq_two_members.jsonl.gz").write_bytes(gzip.compress(first, mtime=0) +
                                                              gzip.compress(rest, mtime=0))
    bad = [dict(NQ_FIXTURE_ROWS[0]), dict(NQ_FIXTURE_ROWS[1])]
    bad[1]["answers"] = "Ankara"  # a string where a list is expected, on line 2
    (FIXTURES / "data_nq_bad_answers.jsonl.gz").write_bytes(
        gzip.compress("".join(json.dumps(r) + "\n" for r in bad).encode("utf-8"), mtime=0))


def main():
    FIXTURES.mkdir(parents=True, exist_ok=True)
    write_gzip_fixtures()
    mmlu_files, mmlu_totals = mmlu()
    reference = {
        "generated_by": "tests/reference/eval_data_reference.py",
        "mmlu_totals": mmlu_totals,
        "mmlu": mmlu_files,
        "freebaseqa": {name: freebaseqa_txt(DATA / "freebaseqa" / name)
                       for name in ("FreebaseQA-eval.txt", "FreebaseQA-dev.txt")},
        "nq_open": nq_open(DATA / "retrieval_qa" / "nq-open-oracle.jsonl.gz"),
        "nq_fixture": nq_open(FIXTURES / "data_nq_small.jsonl.gz"),
        "cnn_dailymail": cnn_dailymail(),
        "vicuna80": instructions(DATA / "instructions" / "vicuna80.jsonl", multi_turn=False),
        "mt_bench": instructions(DATA / "instructions" / "mt_bench.jsonl", multi_turn=True),
    }
    out = FIXTURES / "data_reference.json"
    out.write_text(json.dumps(reference, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
