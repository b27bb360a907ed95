"""paho's socket driven by the asyncio loop, with backpressure of our own.

paho runs without a thread of its own: its socket is registered with the
event loop (``add_reader``/``add_writer``) the way aiomqtt does it, so each
message costs no thread hop. :class:`SocketDriver` holds that plumbing: the
socket callbacks paho calls (from the loop, or from the worker thread that
runs ``connect()``), and the reader that stops reading while ingest holds as
many messages as it may (``full``), until :meth:`SocketDriver.resume`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho

from bridge.ingest.wire import ReadAheadClient

__all__ = ["SocketDriver"]


class SocketDriver:
    """Registers a paho client's socket with the running loop (see the module docstring)."""

    def __init__(self, client: ReadAheadClient, *, full: Callable[[], bool]) -> None:
        self._client = client
        self._full = full
        self.loop: asyncio.AbstractEventLoop | None = None  # set when ingest runs
        self._paused = False
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write

    def read(self) -> None:
        if self._full():
            # Backpressure of our own: brokers do not all hold to our Receive
            # Maximum, so stop reading until the batcher takes what we hold;
            # the broker keeps the rest in our session (TCP flow control).
            self._pause()
            return
        client = self._client
        rc = client.loop_read()
        # Bounded: what was read ahead is at most 64 KiB of packets.
        for _ in range(65536):
            if rc or not client.read_ahead_pending:
                break
            if self._full():
                self._pause()  # the read-ahead is taken up on resume
                return
            rc = client.loop_read()
        sock = client.socket()
        # TLS keeps decrypted bytes the selector cannot see; drain them now.
        for _ in range(1000):
            if not isinstance(sock, ssl.SSLSocket) or sock.pending() == 0 or rc:
                break
            rc = client.loop_read()

    def resume(self) -> None:
        """Read again (after the batcher took what ingest held)."""
        if not self._paused:
            return
        self._paused = False
        sock = self._client.socket()
        if sock is not None and self.loop is not None:
            self._add_reader(sock)
            if self._client.read_ahead_pending:
                # Bytes already read ahead: the selector will not report them.
                self.loop.call_soon(self.read)

    def _pause(self) -> None:
        sock = self._client.socket()
        if self.loop is not None and sock is not None and not self._paused:
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_reader(sock)
            self._paused = True

    def _call_in_loop(self, func: Callable[..., Any], *args: Any) -> None:
        # paho's connect() runs in a worker thread; socket registration must
        # happen on the loop's own thread.
        assert self.loop is not None
        self.loop.call_soon_threadsafe(func, *args)

    def _on_socket_open(self, _c: paho.Client, _u: Any, sock: Any) -> None:
        self._client.drop_read_ahead()
        self._call_in_loop(self._add_reader, sock)

    def _add_reader(self, sock: Any) -> None:
        assert self.loop is not None
        self._paused = False
        with contextlib.suppress(ValueError, OSError):
            self.loop.add_reader(sock, self.read)

    def _on_socket_close(self, _c: paho.Client, _u: Any, sock: Any) -> None:
        self._client.drop_read_ahead()
        self._call_in_loop(self._selector, "remove_reader", sock)
        self._call_in_loop(self._selector, "remove_writer", sock)

    def _on_socket_register_write(self, _c: paho.Client, _u: Any, sock: Any) -> None:
        self._call_in_loop(self._selector, "add_writer", sock, self._client.loop_write)

    def _on_socket_unregister_write(self, _c: paho.Client, _u: Any, sock: Any) -> None:
        self._call_in_loop(self._selector, "remove_writer", sock)

    def _selector(self, action: str, sock: socket.socket, *args: Any) -> None:
        """``loop.add_writer`` and friends, for a socket that may already be closed."""
        assert self.loop is not None
        with contextlib.suppress(ValueError, OSError):
            getattr(self.loop, action)(sock, *args)
