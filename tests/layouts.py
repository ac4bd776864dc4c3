"""Small datasets in the layouts practitioners bring (DAPO-Math-17k, GSM8K, MATH/OpenR1, Omni-MATH), written
by the tests that use them; nothing is downloaded."""

import json

import pyarrow as pa
import pyarrow.parquet as pq

SUMS = [(a, b) for a in range(2, 9) for b in range(3, 7)]  # 28 problems


def dapo_rows():
    """DAPO-Math-17k: a chat-message prompt, the answer under reward_model.ground_truth, each problem repeated."""
    rows = [{"data_source": "math_dapo", "ability": "MATH",
             "prompt": [{"role": "user", "content": f"Solve: what is {a} + {b}?\n\nThe last line of your response "
                                                    "should be of the form Answer: $Answer"}],
             "reward_model": {"ground_truth": str(a + b), "style": "rule"},
             "extra_info": {"index": f"id-{a}-{b}"}} for a, b in SUMS]
    return rows + rows[:5]  # the dataset repeats problems: an exact repeat is one problem


def gsm8k_rows():
    return [{"question": f"Tom has {a} apples and buys {b} more. How many now?",
             "answer": f"He has {a} + {b} = <<{a}+{b}={a + b}>>{a + b} apples.\n#### {a + b}"} for a, b in SUMS]


def math_rows():
    return [{"problem": f"Compute ${a} + {b}$.", "solution": f"Adding, ${a} + {b} = \\boxed{{{a + b}}}$.",
             "level": "Level 1"} for a, b in SUMS]


def omni_rows():
    return [{"problem": f"Find {a} plus {b}.", "answer": str(a + b), "difficulty": 1.0} for a, b in SUMS]


LAYOUTS = {  # rows, the task's fields, a correct response, a restatement that must not count
    "dapo": (dapo_rows, dict(question_field="prompt", answer_field="reward_model.ground_truth",
                             answer_format="answer-line", id_field="extra_info.index"),
             "{s} is the sum.\nAnswer: {s}", "the answer is {s}"),
    "gsm8k": (gsm8k_rows, dict(question_field="question", answer_field="answer", answer_format="gsm8k"),
              "Adding gives {s}.\n#### {s}", "so the total is {s} apples"),
    "math": (math_rows, dict(question_field="problem", answer_field="solution"),
             "so the sum is \\boxed{{{s}}}", "the sum is {s}"),
    "omni": (omni_rows, dict(question_field="problem", answer_field="answer"),
             "\\boxed{{{s}}}", "{s}"),
}


def write(path, rows):
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path)
