"""The ``facevault`` command: parse -> service -> print. Nothing else lives here.

One module per command group (``collections``, ``subjects``, ``enroll_search``, ``audit``, ``privacy``,
``index``, ``eval``, ``batch``, ``server``, ``models``), wired into one app in ``main``; ``output`` prints
JSON or text and turns errors into exit codes. Heavy modules (numpy, SQLAlchemy, models, the service) are
imported inside the commands so ``--help`` is instant.
Exit codes: 0 success; 1 unexpected error; 2 configuration; 3 bad input (including a probe without a
face, or options that exclude each other); 4 not found; 5 conflict; 6 model mismatch; 7 consent or
purpose missing; 8 integrity problem; 9 model unavailable; 10 enrollment finished but some images were
rejected.
"""

from .enroll_search import EXIT_PARTIAL
from .main import app, main

__all__ = ["EXIT_PARTIAL", "app", "main"]
