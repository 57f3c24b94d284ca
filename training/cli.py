"""What every command of the project does with a known error: one line ``error: ...`` on stderr and exit status 2
(bad input: nothing was run or written), instead of a traceback."""

from __future__ import annotations

import sys
from typing import Callable


def run_command(action: Callable[[], object], *errors: type[BaseException]) -> int:
    """Run a command's work; its exit status is what ``action`` returns if that is an int, else 0, and 2 when it
    raises one of ``errors`` (printed as ``error: ...``)."""
    try:
        result = action()
    except errors as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) and not isinstance(result, bool) else 0
