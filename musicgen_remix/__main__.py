"""``python -m musicgen_remix``: see :mod:`musicgen_remix.cli`."""

from musicgen_remix.cli import main

raise SystemExit(main())
