"""musicgen-remix: a Cog prediction server for MusicGen (generate with continuation, and remix).

Nothing is imported or done at import time; see the subpackages.
"""

__version__ = "0.1.0"
