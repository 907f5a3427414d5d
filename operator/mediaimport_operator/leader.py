"""Leader election through a coordination.k8s.io/v1 Lease, as client-go does it.

Only the replica holding the Lease runs kopf; the others wait in ``acquire``.
Why not kopf's peering: peers learn about each other only after they started
acting (a start-up window where two replicas both handle objects), and equal
priorities pause everyone. A Lease is taken with an optimistic-concurrency
write, so at most one replica holds it at any time.

Expiry is judged by *local* observation time, not by the timestamps in the
record, so clock skew between nodes does not matter: a holder is presumed dead
when its record has not changed for ``lease_duration`` seconds as seen here.
A leader that cannot renew within ``renew_deadline`` stops acting (the process
exits and restarts as a candidate) before anyone else may take over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from . import metrics
from .kube import ApiError, Json, Kube, lease_path
from .lanes import Lane

log = logging.getLogger(__name__)


def _micro_time(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._last_renew = 0.0
        self.is_leader = False

    async def acquire(self) -> None:
        """Wait until this replica holds the Lease."""
        announced = False
        while True:
            try:
                if await self._try_acquire_or_renew():
                    log.info("became the leader", extra={"lease": self.name,
                                                         "identity": self.identity})
                    self.is_leader = True
                    metrics.LEADER.set(1)
                    return
            except Exception as error:  # keep standing by, whatever failed
                log.warning("lease not reachable",
                            extra={"error": f"{type(error).__name__}: {error}"})
            if not announced:
                log.info("standing by: another replica holds the lease",
                         extra={"lease": f"{self.namespace}/{self.name}"})
                announced = True
            await asyncio.sleep(self.retry_period)

    async def hold(self) -> None:
        """Renew every retry period; return once leadership is lost.

        Each attempt may take only the time left before the renew deadline, counted
        from the send of the last renewal that succeeded: a request that hangs (a
        server that stopped answering) cannot keep this replica acting past the
        deadline, and the deadline passes before the lease can expire for anyone
        else (``lease_duration`` > ``renew_deadline``, both measured from our send
        or later). Any error of an attempt is a failed attempt, never the end of
        this loop; its end is the end of leadership (``lose``), except when it is
        cancelled for a clean stop (then ``release`` gives the Lease up).
        """
        try:
            while True:
                left = self._deadline_left()
                await asyncio.sleep(min(self.retry_period, max(0.0, left)))
                left = self._deadline_left()
                if left <= 0:
                    log.error("lease not renewed within the renew deadline",
                              extra={"lease": self.name, "deadline_s": self.renew_deadline})
                    break
                try:
                    async with asyncio.timeout(left):
                        renewed = await self._try_acquire_or_renew()
                except Exception as error:  # every failure is a failed attempt
                    log.warning("lease renewal failed",
                                extra={"error": f"{type(error).__name__}: {error}",
                                       "deadline_left_s": round(self._deadline_left(), 3)})
                    continue
                if not renewed and not self._held():
                    log.error("another replica holds the lease", extra={"lease": self.name})
                    break
        except asyncio.CancelledError:
            raise
        except BaseException:
            self.lose()
            raise
        self.lose()

    def _deadline_left(self) -> float:
        return self._last_renew + self.renew_deadline - time.monotonic()

    def lose(self) -> None:
        """Leadership ends here (whatever ended it); idempotent."""
        if self.is_leader:
            log.error("lost the leader lease: stopping", extra={"lease": self.name})
        self.is_leader = False
        metrics.LEADER.set(0)

    def _held(self) -> bool:
        return self._observed is not None and self._observed[0] == self.identity

    async def release(self) -> None:
        """Give the Lease up on a clean exit, so a standby takes over at once."""
        if not self.is_leader:
            return
        self.is_leader = False
        metrics.LEADER.set(0)
        try:
            lease = await self.kube.get(lease_path(self.namespace, self.name), lane=Lane.LEASE)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                spec = dict(lease["spec"])
                spec.update({"holderIdentity": None, "leaseDurationSeconds": 1,
                             "renewTime": _micro_time()})
                await self.kube.request(
                    "PUT", lease_path(self.namespace, self.name), body={**lease, "spec": spec},
                    lane=Lane.LEASE,
                )
        except Exception as error:  # the lease then expires by itself
            log.warning("could not release the lease",
                        extra={"error": f"{type(error).__name__}: {error}"})

    async def _try_acquire_or_renew(self) -> bool:
        sent = time.monotonic()  # the deadline counts from here, not from the answer
        now = datetime.now(UTC)
        lease = await self.kube.get(lease_path(self.namespace, self.name), lane=Lane.LEASE)
        mine = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "renewTime": _micro_time(now),
        }
        if lease is None:
            body: Json = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {**mine, "acquireTime": _micro_time(now), "leaseTransitions": 0},
            }
            try:
                await self.kube.request(
                    "POST", lease_path(self.namespace), body=body, lane=Lane.LEASE
                )
            except ApiError as error:
                if error.conflict:
                    return False
                raise
            self._renewed(mine, sent)
            return True

        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        record = (holder, spec.get("renewTime"), spec.get("leaseDurationSeconds"))
        if record != self._observed:
            self._observed = record
            self._observed_at = time.monotonic()
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        expired = time.monotonic() - self._observed_at > duration
        if holder and holder != self.identity and not expired:
            return False
        new_spec = dict(spec)
        new_spec.update(mine)
        if holder != self.identity:
            new_spec["acquireTime"] = _micro_time(now)
            new_spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        try:
            # resourceVersion in the body makes the write conditional: of two
            # candidates taking an expired lease, exactly one succeeds.
            await self.kube.request(
                "PUT", lease_path(self.namespace, self.name), body={**lease, "spec": new_spec},
                lane=Lane.LEASE,
            )
        except ApiError as error:
            if error.conflict:
                return False
            raise
        self._renewed(mine, sent)
        return True

    def _renewed(self, spec: Json, sent: float) -> None:
        self._observed = (spec["holderIdentity"], spec["renewTime"], spec["leaseDurationSeconds"])
        self._observed_at = time.monotonic()
        self._last_renew = sent
