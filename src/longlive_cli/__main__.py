"""``python -m longlive_cli`` (what torchrun launches)."""

from .cli import main

main()
