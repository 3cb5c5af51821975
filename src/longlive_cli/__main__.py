"""``python -m longlive_cli`` (what torchrun launches) and the ``longlive`` command.

The signal handlers go in before the heavy imports, so Ctrl-C or SIGTERM while torch loads exits 130 quietly.
"""

import sys

from . import interrupts

INTERRUPTED = 130


def main() -> None:
    """Console entry point."""
    interrupts.install()
    try:
        from .cli import main as cli_main
    except KeyboardInterrupt:
        sys.exit(INTERRUPTED)
    cli_main()


if __name__ == "__main__":
    main()
