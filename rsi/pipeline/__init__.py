"""Ray Data pipeline: candidate sets streamed through generation, judging and meta-judging."""
