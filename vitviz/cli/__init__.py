"""Headless subcommands of the vitviz command line."""
