"""Settings from the environment and from flags, for the project's commands.

Every setting is an environment variable and a kebab-case flag (``--log-level=DEBUG``),
so a Deployment can pass them as arguments; flags win. ``--help`` lists the flags and
the environment variables; an unknown argument ends the process with argparse's usage
error (exit 2), a bad value with a ValidationError.
"""

from __future__ import annotations

import argparse
from typing import TypeVar

from pydantic_settings import BaseSettings, CliApp, CliSettingsSource

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def settings_from_args(cls: type[SettingsT], argv: list[str], *, prog: str, description: str
                       ) -> SettingsT:
    prefix = cls.model_config.get("env_prefix", "")
    lines = [
        f"  {prefix}{name.upper()}: {field.description or ''}".rstrip(": ")
        for name, field in cls.model_fields.items()
    ]
    parser = argparse.ArgumentParser(
        prog=prog,
        description=f"{description} Every setting is an environment variable and a flag; "
        "flags win.",
        epilog="Configured by environment variables:\n" + "\n".join(lines),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    flags: CliSettingsSource[SettingsT] = CliSettingsSource(
        cls, root_parser=parser, cli_kebab_case=True, cli_exit_on_error=True
    )
    return CliApp.run(cls, cli_args=argv, cli_settings_source=flags)
