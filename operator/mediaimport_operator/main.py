"""Entry point: ``python -m mediaimport_operator`` (or the ``mediaimport-operator`` script).

Order of things: logging → health/metrics server → (standby until) the leader
Lease → kopf with our registry, stopped when the Lease is lost (or any other
essential background task ends). Exit codes: 0 after a clean stop (SIGTERM), 1
when leadership was lost (the pod restarts and stands by again).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TYPE_CHECKING, cast

import kopf
from pydantic import ValidationError

from .cli import settings_from_args
from .handlers import build_runtime, register
from .health import HealthServer
from .kube import allow_kubernetes_nesting
from .leader import LeaderElector
from .settings import Settings
from .supervisor import Supervisor

if TYPE_CHECKING:
    from kopf._core.engines.peering import Identity  # kopf exports no name for its type

log = logging.getLogger("mediaimport_operator")
# How long kopf may take to stop once leadership is lost, before it is cancelled.
_STOP_GRACE_S = 3.0


def _configure_logging(settings: Settings) -> None:
    kopf.configure(
        verbose=settings.log_level == "DEBUG",
        quiet=settings.log_level in ("WARNING", "ERROR"),
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL,
        log_refkey="mediaimport" if settings.log_format == "json" else None,
    )
    logging.getLogger().setLevel(settings.log_level)
    # aiohttp's and kubernetes' chatter is not ours to show at INFO.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


async def run(settings: Settings) -> int:
    stop_flag = asyncio.Event()
    ready_flag = asyncio.Event()
    ended: list[str] = []
    operator_task: asyncio.Task[None] | None = None

    def essential_ended(name: str) -> None:
        # Leadership is over: no request of ours may go out any more (a standby may be
        # taking over), kopf is told to stop, and is cut short if it does not.
        ended.append(name)
        runtime.kube.fence()
        stop_flag.set()
        if operator_task is not None:
            asyncio.get_running_loop().call_later(_STOP_GRACE_S, operator_task.cancel)

    supervisor = Supervisor(essential_ended)
    runtime = build_runtime(settings, supervisor)
    elector = (
        LeaderElector(
            runtime.kube,
            namespace=settings.lease_namespace_resolved,
            name=settings.lease_name,
            identity=settings.identity,
            lease_duration=settings.lease_duration,
            renew_deadline=settings.lease_renew_deadline,
            retry_period=settings.lease_retry_period,
        )
        if settings.leader_election
        else None
    )

    def role() -> str:
        if elector is None:
            return "leader"
        return "leader" if elector.is_leader else "standby"

    def alive() -> bool:
        return supervisor.healthy() and (operator_task is None or not operator_task.done())

    health = HealthServer(
        settings.http_host, settings.http_port, alive=alive,
        ready=lambda: (ready_flag.is_set() and runtime.imports.listed()) or role() == "standby",
        role=role,
        loops=supervisor.states,
    )
    await health.start()
    log.info("health and metrics server listening", extra={"port": health.port})
    if runtime.channel is not None:
        # Every replica serves the channel, standbys too: import pods reach whichever the
        # Service picks, and an import outlives a change of leader.
        await runtime.channel.start()
    try:
        if elector is not None:
            await elector.acquire()
            supervisor.start("lease", elector.hold, essential=True)
        registry = kopf.OperatorRegistry()
        register(registry, runtime)
        operator_task = asyncio.create_task(
            kopf.operator(
                registry=registry,
                clusterwide=not settings.namespaces,
                namespaces=settings.namespaces,
                standalone=True,
                # Ours, not kopf's default: that asks the user database for the user's name,
                # and an image's uid (10001) has no entry there (getpwuid fails).
                identity=cast("Identity", settings.identity),
                stop_flag=stop_flag,
                ready_flag=ready_flag,
                memo=kopf.Memo(runtime=runtime),
            )
        )
        try:
            await operator_task
        except asyncio.CancelledError:
            if not ended:
                raise
            log.warning("kopf did not stop in time; cut short")
    finally:
        await supervisor.stop()
        if elector is not None and not ended:
            await elector.release()
        if runtime.channel is not None:
            await runtime.channel.stop()
        await health.stop()
        await runtime.kube.close()
    return 1 if ended else 0


def settings_from(argv: list[str]) -> Settings:
    """The settings from the environment, overridden by flags (see cli.settings_from_args)."""
    return settings_from_args(
        Settings, argv, prog="mediaimport-operator",
        description="Reconciles MediaImport resources into import Jobs (see docs/operator.md).",
    )


def main(argv: list[str] | None = None) -> int:
    try:
        settings = settings_from(sys.argv[1:] if argv is None else argv)
    except ValidationError as error:
        print(f"mediaimport-operator: invalid settings: {error}", file=sys.stderr)
        return 2
    if settings.storage_access == "brokered" and not settings.channel_keys_dir:
        print("mediaimport-operator: invalid settings: storage_access brokered needs the "
              "channel's keys (channel_keys_dir; the chart mounts them), or set "
              "storage_access to credentials", file=sys.stderr)
        return 2
    _configure_logging(settings)
    allow_kubernetes_nesting()
    try:
        return asyncio.run(run(settings))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
