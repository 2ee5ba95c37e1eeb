"""Remix: regenerate a song's instrumental, align it to the song's downbeats and mix the vocals back."""
