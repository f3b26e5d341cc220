"""``python -m facevault.cli ...``: the same as the ``facevault`` command."""

from .main import main

main()
