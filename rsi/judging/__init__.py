"""Judging: listwise rankings over permutations, meta-judging of rankings, aggregation into preferences.

Pure functions over texts and rankings: no engine calls happen here (the pipeline makes them).

- ranking: prompts with stable labels and neutralised delimiters, schemas, answer parsing
- pairwise: the pairwise mode (position-balanced schedule, requests, parsing)
- aggregate: batched weighted Bradley–Terry with standard errors, Borda, Kendall tau
- trust: judge-call weights from meta-judgments, execution truth and consensus
- decide: one set's verdict (`decide_pairs` / `decide_rows`): weights, scores ± SE, pairs, position bias
- balance: position balance of judgement pairs
- injection: payloads addressed to the judge, and the suite measuring what they buy (scripts/judge_injection.py)
"""
