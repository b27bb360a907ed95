"""What the bridge tells about itself: metrics, logs and spans.

The lowest layer, beside :mod:`bridge.errors`: every part may count, log and
trace, so these modules import nothing of the bridge but each other and the
exception tree. The admin API only serves what is declared here
(``/metrics``); the parts that count import it from here, never from the API.

- :mod:`bridge.observe.metrics`: the Prometheus metrics of one instance;
- :mod:`bridge.observe.inbound`: those of inbound webhooks and the outbox;
- :mod:`bridge.observe.logs`: structlog set-up and the secret scrubber;
- :mod:`bridge.observe.spans`: span records and the sink protocol;
- :mod:`bridge.observe.otlp`: the optional OTLP exporter of those spans.
"""
