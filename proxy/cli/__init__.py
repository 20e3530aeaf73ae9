"""The `proxy` command: one thin module per subcommand, assembled by `main.py`.

Each module adds its subcommands with `add_cli(subparsers)`, parses, calls one library function and
prints (rich tables live here, never in the library modules). `train.py` holds `proxy base`,
`proxy components` and `proxy train` (over proxy.training.run).
"""
