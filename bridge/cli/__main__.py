"""``python -m bridge.cli``: the same as the ``hookbridge`` command."""

from bridge.cli import main

main()
