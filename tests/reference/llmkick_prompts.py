#!/usr/bin/env python3
"""Prompt texts rendered the way LLM-KICK's released code renders them (VITA-Group/llm-kick, read at commit
37f2122), the fixture tests/unit/test_eval_tasks.cpp compares kick's prompt rendering against.

Followed, line by line in spirit (this is a re-implementation, not a copy):
- multiple_choice_qa/main_mmlu.py: format_subject, format_example, gen_prompt, the "drop a shot while the prompt
  is too long" loop, reading the CSVs with pandas.read_csv(header=None) and dev_df[:ntrain]. Token counts come
  from a stand-in counter (UTF-8 bytes // 4) that the C++ test uses too; the reference counts model tokens.
  The reference's loop never ends when even zero shots are too long (k goes to -1, which gen_prompt reads as
  "all shots"); here, as in kick, it stops at zero shots and records fits = False.
- factoid_qa/main_freebase.py: f"Please give answer to this question: {question}\\nThe answer is ".
- incontext_qa/main_icrqa.py: gen_prompt (with and without context), format_example's wiki-then-web context,
  f"{context[:3072]}\\n\\n{prompt_end}".strip().
- in-context_summarization/generate_question.py: every line of the .story file (readlines) stripped and
  concatenated, after "Summarize the given story ..." (small) or "... news ..." (mid, large) and "\\n\\n".
  Checked here against two lines of LLM-KICK's released json_utils/new_question.jsonl
  (tests/fixtures/eval/tasks/llmkick_new_question_excerpt.jsonl).

Long texts (real MMLU prompts, all 90 stories) are stored as FNV-1a 64 hashes (standard offset basis
0xcbf29ce484222325) and lengths.

usage: python3 tests/reference/llmkick_prompts.py      (needs pandas; reads KICK_DATA, default ../shared/data)
"""
import glob
import gzip
import json
import os

import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures", "eval", "tasks")
OUT = os.path.join(FIXTURES, "llmkick_prompts.json")
DATA = os.environ.get("KICK_DATA", os.path.join(HERE, "..", "..", "..", "shared", "data"))

CHOICES = ["A", "B", "C", "D"]


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for byte in text.encode("utf-8"):
        h ^= byte
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def count_tokens(text):
    """The stand-in token counter shared with the C++ test."""
    return len(text.encode("utf-8")) // 4


# ------------------------------------------------------------------------------------------------ MMLU

def format_subject(subject):
    out = ""
    for part in subject.split("_"):
        out += " " + part
    return out


def format_example(df, idx, include_answer=True):
    prompt = df.iloc[idx, 0]
    k = df.shape[1] - 2
    for j in range(k):
        prompt += "\n{}. {}".format(CHOICES[j], df.iloc[idx, j + 1])
    prompt += "\nAnswer:"
    if include_answer:
        prompt += " {}\n\n".format(df.iloc[idx, k + 1])
    return prompt


def gen_prompt(train_df, subject, k):
    prompt = "The following are multiple choice questions (with answers) about {}.\n\n".format(format_subject(subject))
    for i in range(k):
        prompt += format_example(train_df, i)
    return prompt


def mmlu_prompt(dev_df, test_df, subject, i, ntrain, budget):
    """main_mmlu.py eval(): the prompt for test row i, dropping shots while it exceeds the budget."""
    k = ntrain
    prompt_end = format_example(test_df, i, include_answer=False)
    prompt = gen_prompt(dev_df, subject, k) + prompt_end
    while budget > 0 and count_tokens(prompt) > budget and k > 0:
        k -= 1
        prompt = gen_prompt(dev_df, subject, k) + prompt_end
    fits = budget <= 0 or count_tokens(prompt) <= budget
    return prompt, k, fits


def read_mmlu(folder, subject, ntrain=5):
    dev_df = pd.read_csv(os.path.join(folder, "dev", subject + "_dev.csv"), header=None)[:ntrain]
    test_df = pd.read_csv(os.path.join(folder, "test", subject + "_test.csv"), header=None)
    return dev_df, test_df


def mmlu_cases(folder, subject, questions, with_text):
    dev_df, test_df = read_mmlu(folder, subject)
    cases = []
    for i in questions:
        full, _, _ = mmlu_prompt(dev_df, test_df, subject, i, 5, 0)
        two_shots = gen_prompt(dev_df, subject, 2) + format_example(test_df, i, include_answer=False)
        for budget in (0, count_tokens(full) - 1, count_tokens(two_shots), 1):
            text, shots, fits = mmlu_prompt(dev_df, test_df, subject, i, 5, budget)
            case = {"subject": subject, "question": i, "budget": budget, "shots": shots, "fits": fits,
                    "length": len(text.encode("utf-8")), "fnv": fnv1a64(text)}
            if with_text:
                case["text"] = text
            cases.append(case)
    return cases


# ------------------------------------------------------------------------------------------------ QA

def factoid_prompt(question):
    return f"Please give answer to this question: {question}\nThe answer is "


def retrieval_prompt(question, wiki, web, include_context):
    # gen_prompt + format_example + eval() of main_icrqa.py
    if include_context:
        prompt_end = f"Based on these texts, answer these questions:\n\nQ: {question}\nA:"
    else:
        prompt_end = f"Answer these questions:\n\nQ: {question}\nA:"
        wiki, web = None, None
    context = ""
    if wiki is not None:
        context += wiki
    if web is not None:
        context += web
    return f"{context[:3072]}\n\n{prompt_end}".strip()


# ------------------------------------------------------------------------------------------------ stories

def story_prompt(path, bucket):
    with open(path, "r") as f:
        data = f.readlines()
    content = ""
    for x in data:
        content += str(x).strip()
    noun = "story" if bucket == "small" else "news"
    return (f"Summarize the given {noun} in less than 150 words while preserving high coherence, consistency, "
            f"fluency, and relevance.\n\n" + content)


def main():
    out = {"source": "tests/reference/llmkick_prompts.py", "token_counter": "utf8_bytes // 4"}

    out["mmlu_subjects"] = {s: format_subject(s) for s in sorted(
        os.path.basename(f)[: -len("_test.csv")] for f in glob.glob(os.path.join(DATA, "mmlu", "test", "*_test.csv")))}
    out["mmlu_fixture"] = mmlu_cases(os.path.join(FIXTURES, "mmlu"), "college_computer_science", [0, 1, 2], True)
    out["mmlu_real"] = []
    for subject in ("abstract_algebra", "high_school_european_history"):
        out["mmlu_real"] += mmlu_cases(os.path.join(DATA, "mmlu"), subject, [0, 1], False)

    questions = [
        "Which African country uses the cedi?",
        "Who wrote {Ulysses}, the 1922 novel?",
        "  Ünïcödé: what is 東京 called in English?  ",
    ]
    out["factoid"] = [{"question": q, "prompt": factoid_prompt(q)} for q in questions]

    # A hand-made example whose context crosses 3072 code points inside multi-byte text, with leading space.
    wiki = "  Évian-les-Bains 中文 wiki. " * 110
    web = "naïve café — résumé web. " * 60
    handmade = {"question": "Where is Évian?", "wiki": wiki, "web": web}
    out["retrieval_handmade"] = dict(handmade, open_book=retrieval_prompt(handmade["question"], wiki, web, True),
                                     closed_book=retrieval_prompt(handmade["question"], wiki, web, False))
    out["retrieval_nq"] = []
    with gzip.open(os.path.join(DATA, "retrieval_qa", "nq-open-oracle.jsonl.gz"), "rt", encoding="utf-8") as f:
        for line_number, line in enumerate(f):
            if line_number == 5:
                break
            row = json.loads(line)
            wiki_text = row["ctxs"][0]["text"]  # the one gold passage plays the part of the wiki evidence
            out["retrieval_nq"].append({"row": line_number, "question": row["question"],
                                        "open_book": retrieval_prompt(row["question"], wiki_text, None, True),
                                        "closed_book": retrieval_prompt(row["question"], wiki_text, None, False)})

    stories = []
    for bucket in ("small", "mid", "large"):
        for path in sorted(glob.glob(os.path.join(DATA, "cnn_dailymail", bucket, "*.story"))):
            text = story_prompt(path, bucket)
            stories.append({"bucket": bucket, "id": os.path.basename(path)[: -len(".story")],
                            "length": len(text.encode("utf-8")), "fnv": fnv1a64(text)})
    out["stories"] = stories

    # The released prompts must be among ours: checks this script's reading of generate_question.py.
    small = {story_prompt(p, "small") for p in glob.glob(os.path.join(DATA, "cnn_dailymail", "small", "*.story"))}
    with open(os.path.join(FIXTURES, "llmkick_new_question_excerpt.jsonl"), encoding="utf-8") as f:
        for line in f:
            released = json.loads(line)
            assert released["category"] == "small" and released["text"] in small, released["question_id"]

    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {OUT}: {len(out['mmlu_fixture'])} + {len(out['mmlu_real'])} MMLU prompts, "
          f"{len(out['retrieval_nq'])} NQ rows, {len(stories)} stories")


if __name__ == "__main__":
    main()
