"""The PostgreSQL scenario: one HookBridge instance vs two sharing one store.

Each run gets its own database on the local server (created here, dropped
afterwards); the two instances use a shared subscription so the broker
splits the stream between them.
"""

from __future__ import annotations

import asyncio
import importlib.util
import uuid
from pathlib import Path
from typing import Any

from bench.peers.hookbridge import HookBridge
from bench.runner import run_one
from bench.scenarios import Scenario

SERVER = "postgresql://postgres@127.0.0.1:5432"


def available() -> str | None:
    """None when the scenario can run, else why not."""
    if importlib.util.find_spec("bridge.store.postgres.store") is None:
        return "the PostgreSQL store (bridge/store/postgres.py) is not in this checkout yet"
    try:
        asyncio.run(_admin("SELECT 1"))
    except Exception as exc:
        return f"no PostgreSQL server at {SERVER}: {type(exc).__name__}: {exc}"
    return None


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(f"{SERVER}/postgres", timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def run_postgres(scenario: Scenario, workdir: Path, instances: int) -> dict[str, Any]:
    name = f"hookbridge_bench_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        bridges = [HookBridge(client_id=f"hookbridge-bench-{i}") for i in range(instances)]
        extra: dict[str, object] = {"store_url": f"{SERVER}/{name}"}
        if instances > 1:
            extra["shared_group"] = "bench"
        result = run_one(scenario, bridges[0], workdir, instances=bridges, extra=extra)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    result["peer"] = f"hookbridge x{instances} (PostgreSQL)"
    return result
