"""One way to write a duration, everywhere a study prints or reports one."""

from __future__ import annotations


def hms(seconds: float) -> str:
    """``40 s`` below 90 s, ``12 min`` below an hour, ``1 h 05 min`` above (rounded to the minute)."""
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = int(round(seconds / 60))
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"
