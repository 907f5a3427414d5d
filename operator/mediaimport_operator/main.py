"""Entry point: ``python -m mediaimport_operator`` (or the ``mediaimport-operator`` script).

Order of things: logging → health/metrics server → (standby until) the leader
Lease → kopf with our registry, stopped when the Lease is lost. Exit codes:
0 after a clean stop (SIGTERM), 1 when leadership was lost (the pod restarts and
stands by again).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import kopf
from pydantic import ValidationError
from pydantic_settings import CliApp, CliSettingsSource

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
    """The settings from the environment, overridden by flags: every setting is also a
    kebab-case flag (``--log-level=DEBUG``), so a Deployment can pass them as arguments.
    ``--help`` lists the flags and the environment variables; an unknown argument ends
    the process with argparse's usage error (exit 2), a bad value with a ValidationError."""
    prefix = Settings.model_config.get("env_prefix", "")
    lines = [
        f"  {prefix}{name.upper()}: {field.description or ''}".rstrip(": ")
        for name, field in Settings.model_fields.items()
    ]
    parser = argparse.ArgumentParser(
        prog="mediaimport-operator",
        description="Reconciles MediaImport resources into import Jobs (see docs/operator.md). "
        "Every setting is an environment variable and a flag; flags win.",
        epilog="Configured by environment variables:\n" + "\n".join(lines),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    flags: CliSettingsSource[Settings] = CliSettingsSource(
        Settings, root_parser=parser, cli_kebab_case=True, cli_exit_on_error=True
    )
    return CliApp.run(Settings, cli_args=argv, cli_settings_source=flags)


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
