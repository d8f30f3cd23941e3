"""One module per CLI subcommand, each with `register(subparsers)`; listed in CLI order.

Modules here must not import torch at import time: `check`, `cost` and `draw` stay light.
"""
COMMANDS = ("check", "cost", "draw", "compile", "train", "eval", "sample", "search")
