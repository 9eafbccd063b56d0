"""Recursive Self-Improvement Suite."""
