"""What every stage's `__main__` shares: user errors become one line on stderr and exit code 1."""

from __future__ import annotations

import sys
from collections.abc import Callable


class PipelineError(Exception):
    """An error the user can fix (bad params, bad data, no network): one line, no traceback."""


def run(main: Callable[[], object]) -> None:
    try:
        main()
    except PipelineError as exc:
        sys.exit(f"error: {exc}")
