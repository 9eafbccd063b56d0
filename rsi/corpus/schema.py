"""Arrow schemas of the three corpus tables. Chat fields are lists of {role, content}: TRL's conversational
format, so `preferences` loads as is with `datasets.load_dataset("parquet")` and goes to DPOTrainer."""

from __future__ import annotations

import pyarrow as pa

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
MESSAGES = pa.list_(MESSAGE)

PERFORMANCES = pa.schema([
    ("id", pa.string()),
    ("iteration", pa.int32()),
    ("model_version", pa.int32()),
    ("family", pa.string()),
    ("step", pa.string()),
    ("chain_id", pa.string()),  # the chain (one seed and all grown from it) this output belongs to
    ("seed_text", pa.string()),  # the family's seed: a domain, a topic, a dilemma
    ("set_id", pa.string()),  # the candidate set judges ranked this output in
    ("parent_id", pa.string()),  # the item this output answers (a task for its solutions), null at the root
    ("template_hash", pa.string()),  # the prompt template's version
    ("prompt", MESSAGES),
    ("completion", pa.string()),  # raw model text, kept whatever the parse outcome
    ("parse_status", pa.string()),
    ("parse_error", pa.string()),
    ("parsed", pa.string()),  # JSON of the parsed value, null when parsing failed
    ("procedural_score", pa.float64()),  # the sandbox's verdict as a score, null where no procedure applies
    ("procedural_detail", pa.string()),  # JSON: pass-matrix row/column, mutants killed, program output, …
    ("kept", pa.bool_()),  # went on to the family's next steps
    ("temperature", pa.float64()),
    ("seed", pa.int64()),
    ("num_prompt_tokens", pa.int32()),
    ("num_tokens", pa.int32()),
    ("finish_reason", pa.string()),
])

JUDGMENTS = pa.schema([
    ("id", pa.string()),
    ("iteration", pa.int32()),
    ("judge_model_version", pa.int32()),
    ("level", pa.int8()),  # 1 judges performances, 2 judges level-1 judgments, …
    ("family", pa.string()),
    ("step", pa.string()),
    ("chain_id", pa.string()),
    ("set_id", pa.string()),
    ("template_hash", pa.string()),
    ("candidate_ids", pa.list_(pa.string())),  # canonical order; labels A, B, … (J1, J2, … at level 2)
    ("presented_order", pa.list_(pa.int32())),  # the permutation shown to the judge
    ("ranking", pa.list_(pa.int32())),  # candidate indices best first; null when the answer was invalid
    ("rationale", pa.string()),
    ("parse_status", pa.string()),
    ("parse_error", pa.string()),
    ("raw_text", pa.string()),
    ("prompt", MESSAGES),
    ("temperature", pa.float64()),
    ("seed", pa.int64()),
    ("num_tokens", pa.int32()),
    ("weight", pa.float64()),  # trust given to this judgment when aggregating (from the level above)
])

PREFERENCES = pa.schema([
    ("id", pa.string()),
    ("iteration", pa.int32()),
    ("family", pa.string()),
    ("step", pa.string()),  # the judged step the pair teaches (create_task, rank_tasks, …)
    ("level", pa.int8()),  # level of the judgments the pair came from
    ("prompt", MESSAGES),
    ("chosen", MESSAGES),
    ("rejected", MESSAGES),
    ("chosen_id", pa.string()),
    ("rejected_id", pa.string()),
    ("margin", pa.float64()),
    ("weight", pa.float64()),
    ("source_ids", pa.list_(pa.string())),  # the judgments that decided the pair
    # judgement pairs: where the item the chosen judgment put first was shown (0 = first), among how many;
    # the position balance of the pairs is kept on these (rsi.judging.balance)
    ("chosen_first_shown", pa.int8()),
    ("shown_items", pa.int8()),
])

TABLES = {"performances": PERFORMANCES, "judgments": JUDGMENTS, "preferences": PREFERENCES}
