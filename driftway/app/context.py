"""What every command shares: the invocation's one Settings, built from the environment and the
global options the first time a command asks for it."""

from __future__ import annotations

import logging

import click

from driftway.settings import Settings, SettingsError, load_settings


def settings_of(ctx: click.Context) -> Settings:
    """The Settings for this invocation: environment plus global options, built once."""
    root = ctx.find_root()
    if "settings" not in root.meta:
        try:
            root.meta["settings"] = load_settings(**root.meta.get("overrides", {}))
        except SettingsError as exc:
            raise click.ClickException(f"{exc}") from None
        logging.basicConfig(
            level=root.meta["settings"].log_level.replace("warn", "warning").upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings: Settings = root.meta["settings"]
    return settings
