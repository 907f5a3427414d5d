"""`mediaimport-dev`: the whole of mediaimport on one machine, without Docker.

    mediaimport-dev up [--allow-network CIDR ...]   start (idempotent)
    eval "$(mediaimport-dev env)"                   point kubectl, psql, aws at it
    mediaimport-dev status                          what runs (exit 1 if not up)
    mediaimport-dev logs <component>                a component's log
    mediaimport-dev down                            stop everything
    mediaimport-dev images build                    build the images (cached), show sizes
    mediaimport-dev token USER                      a new API token for USER (printed once it works)

State lives in $MEDIAIMPORT_DEV_HOME, default ./.mediaimport-dev.
"""

from __future__ import annotations

import argparse
import ipaddress
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from mediaimport_dev import images_cli, release, stack
from mediaimport_dev.demo import run_demo
from mediaimport_dev.processes import log_tail

# Subcommands other modules add (e.g. the lead's `demo`): name -> (help, configure, run).
Configure = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]
EXTRA_COMMANDS: dict[str, tuple[str, Configure, Run]] = {}


def _network(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def cmd_up(args: argparse.Namespace) -> int:
    the_stack = stack.Stack(args.home)
    networks = args.allow_network or list(stack.DEFAULT_NETWORKS)
    health = the_stack.health()
    if all(health.values()):
        recorded = (the_stack.load() or {}).get("allow_networks")
        if recorded == networks:
            print(f"mediaimport-dev: already up and healthy ({the_stack.home})")
            return 0
        print(f"mediaimport-dev: restarting: allowed networks change {recorded} -> {networks}")
    elif any(health.values()):
        unhealthy = ", ".join(n for n, ok in health.items() if not ok)
        print(f"mediaimport-dev: not healthy ({unhealthy}): starting afresh")
    the_stack.up(allow_networks=networks)
    print('next: eval "$(mediaimport-dev env)"; kubectl get nodes')
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    try:
        env = stack.Stack(args.home).env()
    except RuntimeError as error:
        print(f"mediaimport-dev: {error}", file=sys.stderr)
        return 1
    for name, value in env.items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    the_stack = stack.Stack(args.home)
    state = the_stack.load()
    if state is None:
        print(f"mediaimport-dev: not up ({the_stack.home})")
        return 1
    recorded = state["components"]
    ok = True
    for component in stack.components():
        if component.name not in recorded:
            print(f"{component.name:14} NOT STARTED")
            ok = False
            continue
        healthy = component.healthy(recorded[component.name])
        ok &= healthy
        word = "healthy" if healthy else "UNHEALTHY"
        print(f"{component.name:14} {word:10} {component.describe(recorded[component.name])}")
    print(f"allowed source networks: {', '.join(state['allow_networks'])}")
    return 0 if ok else 1


def cmd_down(args: argparse.Namespace) -> int:
    stopped = stack.Stack(args.home).down()
    print(f"mediaimport-dev: stopped {', '.join(stopped)}" if stopped
          else "mediaimport-dev: nothing running")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    the_stack = stack.Stack(args.home)
    recorded = (the_stack.load() or {}).get("components", {})
    names = [c.name for c in stack.components()]
    if args.component not in names:
        print(f"unknown component {args.component!r}; one of: {', '.join(names)}", file=sys.stderr)
        return 2
    if args.component not in recorded:
        print(f"{args.component} is not up", file=sys.stderr)
        return 1
    component = next(c for c in stack.components() if c.name == args.component)
    path = component.log_path(recorded[args.component])
    if path is None:
        print(f"{args.component} keeps no log", file=sys.stderr)
        return 1
    files = sorted(path.glob("*.log")) if path.is_dir() else [path]
    for file in files:
        print(f"==> {file} <==")
        print(log_tail(file, args.lines))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mediaimport-dev", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--home", type=Path, default=stack.default_home(),
                        help="state directory "
                        "(default: $MEDIAIMPORT_DEV_HOME or ./.mediaimport-dev)")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="start the local stack (idempotent)")
    up.add_argument("--allow-network", action="append", type=_network, metavar="CIDR",
                    help="network local sources may come from (repeatable; default "
                    f"{stack.DEFAULT_NETWORKS[0]}, where local origins listen)")
    up.set_defaults(run=cmd_up)
    commands.add_parser("env", help="print shell export lines").set_defaults(run=cmd_env)
    commands.add_parser("status", help="what runs; exit 1 if not up").set_defaults(run=cmd_status)
    commands.add_parser("down", help="stop everything (idempotent)").set_defaults(run=cmd_down)
    logs = commands.add_parser("logs", help="tail a component's log")
    logs.add_argument("component", help="network, controlplane, node, postgres, s3, ...")
    logs.add_argument("-n", "--lines", type=int, default=40)
    logs.set_defaults(run=cmd_logs)
    demo = commands.add_parser("demo", help="import a locally made sample video, end to end")
    demo.set_defaults(run=lambda args: run_demo(args.home))
    images_cli.configure(commands.add_parser("images", help="the project's container images"))
    release.configure_token(commands.add_parser("token", help="print a new API token for USER"))
    for name, (help_text, configure, run) in EXTRA_COMMANDS.items():
        sub = commands.add_parser(name, help=help_text)
        configure(sub)
        sub.set_defaults(run=run)
    return parser


def _terminated(signum: int, _frame: object) -> None:
    # SIGTERM (a CI timeout, `timeout`, a process manager) unwinds like Ctrl-C, so an
    # interrupted `up` stops what it started and lets go of the machine's node lock.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminated)
    args = build_parser().parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
