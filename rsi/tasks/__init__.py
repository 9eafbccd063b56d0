"""Task families: what the model is asked to do, how its answers are parsed and what judges look for."""
