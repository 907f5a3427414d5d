"""What /readyz checks, on resources of its own: a Postgres connection outside the pool and
the Kubernetes client's lease lanes (which no request of a user waits in).

Readiness must say whether this process can serve, not how busy it is: checked through the
pool and the ordinary request lanes, a pod whose users hold every connection (a burst of
slow imports) turned unready and pushed its load onto the others. The answer says only
which dependency failed; why goes to the log (database host and user, RBAC messages).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg
from mediaimport_operator.kube import Kube, mediaimport_path
from mediaimport_operator.lanes import Lane

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 2.0
OK = "ok"
UNAVAILABLE = "unavailable"


class Readiness:
    def __init__(self, database_url: str, kube: Kube, namespace: str) -> None:
        self.database_url = database_url
        self.kube = kube
        self.namespace = namespace
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()

    async def checks(self) -> dict[str, str]:
        kubernetes, postgres = await asyncio.gather(
            self._check("kubernetes", self._kubernetes()),
            self._check("postgres", self._postgres()))
        return {"kubernetes": kubernetes, "postgres": postgres}

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    @staticmethod
    async def _check(name: str, check: Any) -> str:
        try:
            await asyncio.wait_for(check, CHECK_TIMEOUT)
        except Exception as error:
            log.warning("readiness check failed",
                        extra={"dependency": name, "error": str(error) or type(error).__name__})
            return UNAVAILABLE
        return OK

    async def _kubernetes(self) -> None:
        await self.kube.request("GET", mediaimport_path(self.namespace), params={"limit": "1"},
                                lane=Lane.LEASE)

    async def _postgres(self) -> None:
        async with self._lock:  # probes share the one connection
            try:
                if self._conn is None or self._conn.closed or self._conn.broken:
                    self._conn = await psycopg.AsyncConnection.connect(
                        self.database_url, autocommit=True, connect_timeout=int(CHECK_TIMEOUT))
                await self._conn.execute("SELECT 1")
            except BaseException:
                # A connection left mid-statement (a timeout) is not used again.
                if self._conn is not None:
                    conn, self._conn = self._conn, None
                    await asyncio.shield(conn.close())
                raise
