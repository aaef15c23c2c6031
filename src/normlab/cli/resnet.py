"""`normlab resnet ...` commands (placeholder: filled in by its issue)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("resnet", help="(not yet available)")
    p.set_defaults(func=lambda args: p.error("not yet implemented"))
