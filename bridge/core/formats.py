"""Payload formats: how an event becomes the bytes of a delivery body.

A format is a pure function ``encode(event) -> Encoded(body, content_type,
extra_headers)`` kept in a small registry under the name a subscription's
``format`` uses. The sender signs exactly the bytes a format returns.
Plugins add formats with :func:`register_format`. An encoder that cannot
encode an event raises a :class:`~bridge.errors.BridgeError`; the sender turns
it into a failed attempt.

Built in:

``json``
    The canonical envelope (``application/json``).
``xml``
    The same envelope as a document (``application/xml``)::

        <?xml version="1.0" encoding="UTF-8"?>
        <event id="evt_…" type="session.started" schema_version="1">
          <timestamp>2026-11-22T04:36:14.553Z</timestamp>
          <source>mqtt://broker-1/devices/dev-42/events</source>
          <data>
            <field name="device_id" type="string">dev-42</field>
            <field name="seq" type="number">17</field>
            <field name="tags" type="array"><item type="string">a</item></field>
            <field name="meta" type="object"><field name="k" type="null"/></field>
          </data>
        </event>

    ``type`` is one of string, number, boolean, null, object, array; a number
    is written as JSON writes it, a boolean as ``true``/``false``. A string
    holding characters XML 1.0 cannot carry at all (control characters) is
    written base64 of its UTF-8 with ``encoding="base64"``; a field name such
    as that gets ``name_encoding="base64"``.
``form``
    ``application/x-www-form-urlencoded`` with one field ``payload`` holding
    the JSON envelope, as GitHub sends form webhooks.
``cloudevents``
    CloudEvents 1.0 structured mode (``application/cloudevents+json``):
    ``specversion``, ``id``, ``source``, ``type``, ``time``, ``subject``
    (the device id, when there is one), ``datacontenttype`` and ``data``.
``cloudevents-binary``
    CloudEvents 1.0 binary mode: the attributes as ``ce-*`` headers
    (percent-encoded where HTTP needs it), the body is ``data`` as JSON.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode
from xml.sax.saxutils import escape, quoteattr

import orjson

from bridge.core.events import Event, format_timestamp

__all__ = [
    "FORMATS",
    "Encoded",
    "Encoder",
    "encode_cloudevents",
    "encode_cloudevents_binary",
    "encode_form",
    "encode_json",
    "encode_xml",
    "encoder_for",
    "register_format",
]


class Encoded(NamedTuple):
    """One encoded body, with its content type and any headers the format adds."""

    body: bytes
    content_type: str
    extra_headers: Mapping[str, str]


Encoder = Callable[[Event], Encoded]

_NO_HEADERS: Mapping[str, str] = {}


def encode_json(event: Event) -> Encoded:
    """The canonical JSON envelope (encoded once per event, reused on every attempt)."""
    return Encoded(event.body(), "application/json", _NO_HEADERS)


# ---------------------------------------------------------------- xml

# What XML 1.0 can carry at all; anything else cannot even be a character reference.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


# A parser turns a literal CR into LF; a character reference keeps it.
_TEXT_ENTITIES = {"\r": "&#13;"}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8", "surrogatepass")).decode("ascii")


def _xml_name(name: str) -> str:
    if _NOT_XML.search(name):
        return f'name={quoteattr(_b64(name))} name_encoding="base64"'
    return f"name={quoteattr(name)}"


def _xml_value(tag: str, name_attr: str, value: Any, out: list[str]) -> None:
    head = f"<{tag}{' ' + name_attr if name_attr else ''}"
    if value is None:
        out.append(f'{head} type="null"/>')
    elif isinstance(value, bool):
        out.append(f'{head} type="boolean">{"true" if value else "false"}</{tag}>')
    elif isinstance(value, int | float):
        # json, not orjson: integers beyond 64 bits are valid JSON numbers too
        out.append(f'{head} type="number">{json.dumps(value)}</{tag}>')
    elif isinstance(value, str):
        if _NOT_XML.search(value):
            out.append(f'{head} type="string" encoding="base64">{_b64(value)}</{tag}>')
        else:
            out.append(f'{head} type="string">{escape(value, _TEXT_ENTITIES)}</{tag}>')
    elif isinstance(value, Mapping):
        out.append(f'{head} type="object">')
        for key, item in value.items():
            _xml_value("field", _xml_name(str(key)), item, out)
        out.append(f"</{tag}>")
    elif isinstance(value, list | tuple):
        out.append(f'{head} type="array">')
        for item in value:
            _xml_value("item", "", item, out)
        out.append(f"</{tag}>")
    else:  # events are JSON; anything else is a bug upstream, written as text
        _xml_value(tag, name_attr, str(value), out)


def _xml_text(value: str) -> str:
    # Envelope fields come from config and topics; keep the document well-formed regardless.
    return _NOT_XML.sub("\ufffd", value)


def encode_xml(event: Event) -> Encoded:
    """The envelope as an XML document (shape in the module docstring)."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f"<event id={quoteattr(_xml_text(event.id))} type={quoteattr(_xml_text(event.type))}"
        f' schema_version="{int(event.schema_version)}">',
        f"<timestamp>{format_timestamp(event.timestamp)}</timestamp>",
        f"<source>{escape(_xml_text(event.source), _TEXT_ENTITIES)}</source>",
        "<data>",
    ]
    for key, value in event.data.items():
        _xml_value("field", _xml_name(str(key)), value, out)
    out.append("</data></event>\n")
    return Encoded("".join(out).encode("utf-8"), "application/xml", _NO_HEADERS)


# ---------------------------------------------------------------- form


def encode_form(event: Event) -> Encoded:
    """``payload=<JSON envelope>``, form-encoded."""
    body = urlencode({"payload": event.body().decode("utf-8")}).encode("ascii")
    return Encoded(body, "application/x-www-form-urlencoded", _NO_HEADERS)


# ---------------------------------------------------------------- cloudevents


def _cloudevent_attributes(event: Event) -> dict[str, str]:
    attributes = {
        "specversion": "1.0",
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "time": format_timestamp(event.timestamp),
    }
    if event.device_id:
        attributes["subject"] = event.device_id
    return attributes


def encode_cloudevents(event: Event) -> Encoded:
    """CloudEvents 1.0 structured mode."""
    document = {
        **_cloudevent_attributes(event),
        "datacontenttype": "application/json",
        "data": event.data,
    }
    return Encoded(orjson.dumps(document), "application/cloudevents+json", _NO_HEADERS)


# The CloudEvents HTTP binding: printable ASCII except space, '"' and '%' passes as is.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')


def encode_cloudevents_binary(event: Event) -> Encoded:
    """CloudEvents 1.0 binary mode: ``ce-*`` headers, ``data`` as the JSON body."""
    headers = {
        f"ce-{name}": quote(value, safe=_HEADER_SAFE)
        for name, value in _cloudevent_attributes(event).items()
    }
    return Encoded(orjson.dumps(event.data), "application/json", headers)


FORMATS: dict[str, Encoder] = {
    "json": encode_json,
    "xml": encode_xml,
    "form": encode_form,
    "cloudevents": encode_cloudevents,
    "cloudevents-binary": encode_cloudevents_binary,
}
"""Every available format by name."""


def register_format(name: str, encoder: Encoder) -> None:
    """Make ``encoder`` available as ``format: <name>``; a later registration replaces it."""
    FORMATS[name] = encoder


def encoder_for(name: str) -> Encoder | None:
    return FORMATS.get(name)
