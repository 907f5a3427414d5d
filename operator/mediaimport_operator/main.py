"""Entry point: ``python -m mediaimport_operator`` (or the ``mediaimport-operator`` script).

Order of things: logging → health/metrics server → (standby until) the leader
Lease → kopf with our registry, stopped when the Lease is lost. Exit codes:
0 after a clean stop (SIGTERM), 1 when leadership was lost (the pod restarts and
stands by again).
"""

from __future__ import annotations

import asyncio
import logging
import sys

import kopf
from pydantic import ValidationError

from .cli import settings_from_args
from .handlers import build_runtime, register
from .health import HealthServer
from .leader import LeaderElector
from .settings import Settings

log = logging.getLogger("mediaimport_operator")


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
    runtime = build_runtime(settings)
    stop_flag = asyncio.Event()
    ready_flag = asyncio.Event()
    lost = asyncio.Event()
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
    operator_task: asyncio.Task[None] | None = None

    def role() -> str:
        if elector is None:
            return "leader"
        return "leader" if elector.is_leader else "standby"

    def alive() -> bool:
        return not lost.is_set() and (operator_task is None or not operator_task.done())

    health = HealthServer(
        settings.http_host, settings.http_port, alive=alive,
        ready=lambda: ready_flag.is_set() or role() == "standby", role=role,
    )
    await health.start()
    log.info("health and metrics server listening", extra={"port": health.port})
    hold: asyncio.Task[None] | None = None
    try:
        if elector is not None:
            await elector.acquire()

            def on_lost() -> None:
                lost.set()
                stop_flag.set()

            hold = asyncio.create_task(elector.hold(on_lost))
        registry = kopf.OperatorRegistry()
        register(registry, runtime)
        operator_task = asyncio.create_task(
            kopf.operator(
                registry=registry,
                clusterwide=not settings.namespaces,
                namespaces=settings.namespaces,
                standalone=True,
                stop_flag=stop_flag,
                ready_flag=ready_flag,
                memo=kopf.Memo(runtime=runtime),
            )
        )
        await operator_task
    finally:
        if hold is not None:
            hold.cancel()
        if elector is not None and not lost.is_set():
            await elector.release()
        await health.stop()
        await runtime.kube.close()
    return 1 if lost.is_set() else 0


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
    _configure_logging(settings)
    try:
        return asyncio.run(run(settings))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
