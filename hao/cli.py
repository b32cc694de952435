"""The ``hao`` command line. Sub-commands: spaces, calibrate, latency, search, export."""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence

from hao.errors import HaoError, MissingDependencyError

# Modules that add sub-commands: each defines `add_<name>_commands(subparsers)`.
_COMMAND_MODULES = (("hao.cli_latency", "add_latency_commands"), ("hao.cli_search", "add_search_commands"),
                    ("hao.cli_evaluate", "add_evaluate_commands"))


def _cmd_spaces(args: argparse.Namespace) -> int:
    from hao.space import get_space, list_spaces, space_info
    rows = []
    for name in list_spaces():
        sp = get_space(name)
        rows.append({"name": name, "family": sp.family, "size": str(sp.size()),
                     "searchable_layers": sp.num_searchable_layers(), "decisions": len(sp.decision_names),
                     "input_shape": list(sp.input_shape), "description": space_info(name).description})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    w = max(len(r["name"]) for r in rows)
    print(f"{'name':<{w}}  {'family':<13} {'size':>12}  {'layers':>6}  description")
    for r in rows:
        size = int(r["size"])
        s = str(size) if size < 10**9 else f"{float(size):.3e}"
        print(f"{r['name']:<{w}}  {r['family']:<13} {s:>12}  {r['searchable_layers']:>6}  {r['description']}")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hao")
    except PackageNotFoundError:  # imported from a checkout that was never installed
        return "unknown (not installed; pip install -e .)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hao", description="Hardware-aware architecture + quantization search.")
    parser.add_argument("--version", action="version", version=f"hao {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("spaces", help="list registered search spaces with their exact sizes")
    p.add_argument("--json", action="store_true", help="print a JSON list of objects (size as a decimal string)")
    p.set_defaults(func=_cmd_spaces)
    for mod_name, fn_name in _COMMAND_MODULES:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:
            if exc.name != mod_name:  # a real missing dependency inside the module: surface it
                raise
            continue
        getattr(mod, fn_name)(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (HaoError, MissingDependencyError) as exc:
        print(f"hao {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nhao {args.command}: interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
