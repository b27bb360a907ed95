"""The benchmark harness: HookBridge and its peers side by side (``python -m bench``).

One run = a private mosquitto, one bridge under test as a subprocess, a
webhook receiver and a publisher each in its own process. See
:mod:`bench.runner` for one run and :mod:`bench.__main__` for the CLI.
"""
