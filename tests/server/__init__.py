"""Tests against the real current Cog server (coglet 0.23), started with ``python -m musicgen_remix serve``."""
