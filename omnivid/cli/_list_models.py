"""``omnivid models``: the providers, their models and each model's rules."""

from __future__ import annotations

import argparse
import json
import sys

from ..providers import all_models, get_provider
from ._common import EXIT_OK
from ._progress import rich_available

__all__ = ["models"]


def models(args: argparse.Namespace) -> int:
    """Run ``omnivid models``: a table on a terminal with rich, plain text, or ``--json``."""
    specs = all_models()
    if args.json:
        data = [
            {
                "provider": s.provider,
                "model": s.name,
                "summary": s.summary,
                "modes": list(s.modes),
                "rules": list(s.rules),
                "env_var": get_provider(s.provider).env_var,
            }
            for s in specs
        ]
        print(json.dumps(data, indent=2))
        return EXIT_OK
    if sys.stdout.isatty() and rich_available():
        from rich.console import Console
        from rich.table import Table

        table = Table(title="omnivid models", show_lines=True)
        table.add_column("provider")
        table.add_column("model", no_wrap=True)
        table.add_column("modes")
        table.add_column("rules")
        for s in specs:
            table.add_row(
                s.provider,
                f"{s.name}\n[dim]{s.summary}[/dim]",
                "\n".join(s.modes),
                "\n".join(s.rules),
            )
        Console().print(table)
        return EXIT_OK
    for s in specs:
        env_var = get_provider(s.provider).env_var
        print(f"{s.provider:<8}  {s.name}   (key: {env_var})")
        print(f"          {s.summary}")
        print(f"          modes: {', '.join(s.modes)}")
        for rule in s.rules:
            print(f"          - {rule}")
        print()
    return EXIT_OK
