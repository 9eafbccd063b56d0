"""Judging: listwise rankings over permutations, meta-judging of rankings, aggregation into preferences.

Pure functions over texts and rankings: no engine calls happen here (the pipeline makes them).
"""
