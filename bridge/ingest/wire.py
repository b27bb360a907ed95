"""The wire: the paho client ingest drives, and how it connects.

paho is used without a thread of its own (see :mod:`bridge.ingest.client`);
this module builds the client (protocol, credentials, TLS, Last Will, manual
acknowledgement) and connects it with a persistent session.
"""

from __future__ import annotations

import ssl
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge.config import MqttSettings
from bridge.errors import BrokerError

__all__ = ["ReadAheadClient", "connect", "new_client", "status_topic"]


class _ClosingSSLSocket(ssl.SSLSocket):
    """A TLS socket that closes itself when its handshake fails."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


class ReadAheadClient(paho.Client):
    """paho with a read-ahead buffer under its packet reader.

    paho reads one packet per ``loop_read()`` in three or more ``recv()`` calls
    (type byte, length bytes, body). Reading 64 KiB ahead lets one socket
    readiness callback take every packet that has arrived, with one syscall,
    instead of one event-loop wakeup and several syscalls per message.
    """

    _READ_AHEAD = 65536

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_ahead = bytearray()

    def _sock_recv(self, bufsize: int) -> bytes:
        if not self._read_ahead:
            data = super()._sock_recv(max(bufsize, self._READ_AHEAD))
            if len(data) <= bufsize:
                return data
            self._read_ahead += data
        chunk = bytes(self._read_ahead[:bufsize])
        del self._read_ahead[:bufsize]  # bytearray drops a prefix without copying the rest
        return chunk

    @property
    def read_ahead_pending(self) -> bool:
        return bool(self._read_ahead)

    def drop_read_ahead(self) -> None:
        """Bytes of a closed connection must never be parsed as the next one's."""
        self._read_ahead.clear()


def new_client(s: MqttSettings, *, will_topic: str) -> ReadAheadClient:
    """A paho client for ``s``: protocol, credentials, TLS, Last Will, manual acks."""
    v5 = s.protocol == "5"
    client = ReadAheadClient(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=s.client_id,
        clean_session=None if v5 else False,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        reconnect_on_failure=False,
        manual_ack=True,
    )
    if s.username is not None:
        password = s.password.get_secret_value() if s.password is not None else None
        client.username_pw_set(s.username, password)
    if s.tls_enabled:
        try:
            context = ssl.create_default_context(
                cafile=str(s.tls.ca_file) if s.tls.ca_file else None
            )
            if s.tls.cert_file:
                context.load_cert_chain(
                    str(s.tls.cert_file), str(s.tls.key_file) if s.tls.key_file else None
                )
        except (OSError, ssl.SSLError) as exc:
            # ssl.SSLError is an OSError; both name a file, never a key's content.
            raise BrokerError(f"cannot load the mqtt.tls files: {exc}") from None
        # paho leaves the socket of a failed handshake open (a ResourceWarning per
        # retry against a broker we do not trust); this socket class closes it.
        context.sslsocket_class = _ClosingSSLSocket
        client.tls_set_context(context)
    client.will_set(will_topic, b"offline", qos=1, retain=True)
    client.max_inflight_messages_set(max(20, min(s.receive_maximum, 65535)))
    client.max_queued_messages_set(0)
    return client


def connect(client: paho.Client, s: MqttSettings) -> None:
    """CONNECT (blocking): a persistent session, with its expiry and receive maximum on v5."""
    properties = None
    clean_start: bool | Literal[3] = paho.MQTT_CLEAN_START_FIRST_ONLY
    if s.protocol == "5":
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = int(s.session_expiry)
        properties.ReceiveMaximum = s.receive_maximum
        clean_start = False
    rc = client.connect(
        s.host,
        s.port,
        keepalive=int(s.keepalive),
        clean_start=clean_start,
        properties=properties,
    )
    if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
        raise BrokerError(paho.error_string(rc))


def status_topic(client_id: str) -> str:
    """Where the bridge publishes its own presence (retained; Last Will ``offline``)."""
    return f"hookbridge/{client_id}/status"
