"""`normlab study ...` commands (placeholder: filled in by its issue)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("study", help="(not yet available)")
    p.set_defaults(func=lambda args: p.error("not yet implemented"))
