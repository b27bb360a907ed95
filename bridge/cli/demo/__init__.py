"""``hookbridge demo``: a private broker, simulated devices, a verifying receiver and the bridge.

Everything runs on 127.0.0.1 in one process (mosquitto, when installed, in a
child process): :mod:`bridge.demo.broker`, :mod:`bridge.demo.simulator`,
:mod:`bridge.demo.receiver`, wired by :mod:`bridge.demo.runner`.
"""

__all__: list[str] = []
