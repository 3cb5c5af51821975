"""``python -m longlive_cli`` (what torchrun launches) and the ``longlive`` command.

The signal handlers go in before the heavy imports, so Ctrl-C or SIGTERM while torch loads exits 130 quietly.
OpenMP threads that wait for work sleep rather than spin (unless OMP_WAIT_POLICY says otherwise): spinning threads
made a render on a 2-core CPU with one other busy process 6x slower than one thread, sleeping ones 1.3x.
"""

import os
import sys

from . import interrupts

INTERRUPTED = 130


def main() -> None:
    """Console entry point."""
    interrupts.install()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read once, when torch loads OpenMP
    try:
        from .cli import main as cli_main
    except KeyboardInterrupt:
        sys.exit(INTERRUPTED)
    cli_main()


if __name__ == "__main__":
    main()
