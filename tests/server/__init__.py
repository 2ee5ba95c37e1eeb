"""Tests against the real Cog HTTP server (cog 0.16.12), started as a subprocess."""
