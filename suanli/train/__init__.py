"""Training from typed configs: ``config`` (TOML -> dataclasses), ``trainer`` (the loop), ``recipes``."""
