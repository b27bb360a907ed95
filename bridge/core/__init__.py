"""The pure core: events, normalising, rules, routing, retry, presence, circuit, formats, signing.

No I/O here: every module is a pure function or a pure state machine.
"""
