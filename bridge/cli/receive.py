"""``hookbridge receive``: a webhook receiver a newcomer can run before writing one.

It listens on ``--host``/``--port``, takes a POST on any path, verifies each
Standard Webhooks signature with the project's own code (the demo's receiver,
:class:`bridge.cli.demo.receiver.DemoReceiver`, over :mod:`bridge.core.signing`:
no extra package), and prints one line per event. A bad signature is answered
401 and said. With ``--answer JSON`` every verified request is answered 200
with that body: what a pipe subscription sends back to the device.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from typing import Annotated

import typer

from bridge.core.signing import SECRET_PREFIX

__all__ = ["receive"]


def _say(line: str) -> None:
    print(line, flush=True)


async def _serve(host: str, port: int, secrets: list[str], answer: bytes | None) -> int:
    from bridge.cli.demo.receiver import DemoReceiver  # aiohttp: only when it runs

    receiver = DemoReceiver(secrets, printer=_say, answer=answer)
    try:
        await receiver.start(host, port, any_path=True)
    except OSError as exc:
        _say(f"error: cannot listen on {host}:{port} (--host, --port): {exc.strerror or exc}")
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    what = "answering each request with --answer" if answer is not None else "answering 204"
    _say(f"listening on http://{host}:{receiver.port}/ (any path), {what}; Ctrl-C stops.")
    _say(f"verifying signatures with {len(secrets)} secret(s).")
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await receiver.stop()
    _say(f"{receiver.verified} webhooks verified, {receiver.refused} refused.")
    return 0


def receive(
    secret: Annotated[
        list[str],
        typer.Option(
            "--secret",
            envvar="HOOKBRIDGE_RECEIVE_SECRET",
            help="The subscription's whsec_… secret (repeat it during a key rotation).",
        ),
    ],
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    answer: Annotated[
        str | None,
        typer.Option("--answer", help="Pipe mode: answer every request with this JSON body."),
    ] = None,
) -> None:
    """Receive webhooks: verify each signature and print one line per event."""
    body: bytes | None = None
    if answer is not None:
        try:
            json.loads(answer)
        except ValueError:
            typer.echo(f"error: --answer is not JSON: {answer[:80]}", err=True)
            raise typer.Exit(2) from None
        body = answer.encode()
    for value in secret:
        if not value.startswith(SECRET_PREFIX):
            typer.echo(
                f"warning: a --secret not in the form {SECRET_PREFIX}<base64> is used as raw "
                "bytes, as the bridge signs with it",
                err=True,
            )
    if not 0 <= port <= 65535:
        typer.echo("error: --port must be between 0 and 65535", err=True)
        raise typer.Exit(2)
    with contextlib.suppress(KeyboardInterrupt):
        raise typer.Exit(asyncio.run(_serve(host, port, list(secret), body)))
