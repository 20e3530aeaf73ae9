"""The `proxy` command: one thin module per subcommand, assembled by `main.py`.

Each module adds its subcommands with `add_cli(subparsers)`, parses, calls one library function and
prints (rich tables live here, never in the library modules):

- `train.py`: `proxy base`, `proxy components`, `proxy train` (proxy.training.run)
- `merge.py`: `proxy merge` (proxy.merge.merge_to_folder); `python -m proxy.cli.merge` runs it alone
- `evaluate.py`: `proxy evaluate` (proxy.evaluate.evaluate_report)
- `search.py`: `proxy search` (proxy.search_proxies.search_with_proxies)
- `validate.py`: `proxy validate` (proxy.validate.validate_tables)

This file imports nothing, so `python -m proxy.cli.merge` does not load the other commands.
"""
