"""Evaluations: HumanEval pass@k, head-to-head win-rate, judge accuracy."""
