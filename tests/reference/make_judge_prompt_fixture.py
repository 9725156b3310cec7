#!/usr/bin/env python3
"""Renders LLM-KICK's judge prompts the way its gpt4_judge.py scripts do (Python str.format with the
question, both answers and the prompt's `defaults`), for tests/fixtures/judges/rendered.json.

Inputs: the reference prompt tables, byte-for-byte from VITA-Group/llm-kick@37f2122d:
  in-context_summarization/json_utils/prompt.jsonl -> tests/fixtures/judges/llmkick_summary_prompt.jsonl
  mt_conversation/table/prompt.jsonl              -> tests/fixtures/judges/llmkick_mt_prompt.jsonl
and FastChat's single-answer graders (lm-sys/FastChat@0e6e7fdc, fastchat/llm_judge/data/judge_prompts.jsonl,
the rows single-v1 and single-v1-multi-turn)      -> tests/fixtures/judges/fastchat_single_prompt.jsonl
kick's data/judges/*.yaml must render to exactly these strings (tests/unit/test_serve_judge.cpp).

Usage: python3 tests/reference/make_judge_prompt_fixture.py   (standard library only)
"""
import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
FIXTURES = HERE.parent / "fixtures" / "judges"

# Inputs chosen to catch renderer mistakes: literal braces (str.format must not touch substituted
# values), non-ASCII text, blank lines and trailing whitespace.
VARS = {
    "question": "What does {x} mean in f\"{x}\"?\n\nExplain — briefly. ",
    "answer_1": "It is a placeholder.\n  Indented line {{kept}}",
    "answer_2": "Ünïcödé answer: 2 {answer_1}",
    "answer": "A single answer with {braces} and\n\ntwo paragraphs.",
    "question_1": "First {turn} question?",
    "question_2": "Second question — now shorter.",
}

# kick's judge name for each reference prompt (the table file and its category field).
NAMES = {
    ("llmkick_summary_prompt.jsonl", "small"): "llmkick_summary",
    ("llmkick_summary_prompt.jsonl", "mid"): "llmkick_summary",
    ("llmkick_summary_prompt.jsonl", "large"): "llmkick_summary",
    ("llmkick_mt_prompt.jsonl", "general"): "llmkick_mt_general",
    ("llmkick_mt_prompt.jsonl", "coding"): "llmkick_mt_coding",
    ("llmkick_mt_prompt.jsonl", "math"): "llmkick_mt_math",
    ("fastchat_single_prompt.jsonl", "single-v1"): "fastchat_single",
    ("fastchat_single_prompt.jsonl", "single-v1-multi-turn"): "fastchat_single_multi_turn",
}


def main():
    cases = []
    for table in ("llmkick_summary_prompt.jsonl", "llmkick_mt_prompt.jsonl"):
        for line in (FIXTURES / table).read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            # As gen_prompt() in both gpt4_judge.py scripts does it.
            user = row["prompt_template"].format(
                question=VARS["question"], answer_1=VARS["answer_1"], answer_2=VARS["answer_2"], **row["defaults"])
            cases.append({"judge": NAMES[(table, row["category"])], "table": table, "category": row["category"],
                          "system": row["system_prompt"], "user": user})
    for line in (FIXTURES / "fastchat_single_prompt.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        # As run_judge_single() in FastChat's llm_judge/common.py does it: one turn, or both turns of a conversation.
        if row["name"] == "single-v1":
            used = {"question": VARS["question"], "answer": VARS["answer"]}
        else:
            used = {"question_1": VARS["question_1"], "answer_1": VARS["answer_1"],
                    "question_2": VARS["question_2"], "answer_2": VARS["answer_2"]}
        cases.append({"judge": NAMES[("fastchat_single_prompt.jsonl", row["name"])], "table": "fastchat_single_prompt.jsonl",
                      "category": row["name"], "vars": used, "system": row["system_prompt"],
                      "user": row["prompt_template"].format(**used)})
    out = {"vars": VARS, "cases": cases}
    (FIXTURES / "rendered.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(cases)} rendered prompts to {FIXTURES / 'rendered.json'}")


if __name__ == "__main__":
    main()
