"""The ``normlab`` command: thin argument parsing over the library.

Each command group lives in its own module and adds itself with
``register(subparsers)``; a command's handler returns an exit code.
Bad input (a ValueError or a missing file raised by the library) is printed
as one clear line and exits with status 2, like a bad flag; a full disk is one
line naming the file and saying how to go on, status 1. Exit codes (see
docs/errors.md): 0 done, 1 a run or study ended without its result (a
diverged NER run, a study with failed runs), 2 bad input, 130 interrupted.

One vocabulary for every command: ``finite_float`` for every float option,
``HelpFormatter`` (every default shown in ``--help``)
and the metavars ``DIR``, ``FILE``, ``PATH``, ``N``.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import math
import sys
import warnings
from pathlib import Path

# Command groups, each a module of this package with a ``register(subparsers)``.
GROUPS = ("resnet", "ner", "study")


# Exit codes of every command.
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default.

    A help text that already says its default (the word "default") is left
    alone; otherwise "(default X)" is appended, and "(default off)" for a flag.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or "default" in text or action.default is argparse.SUPPRESS:
            return text
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return f"{text} (default off)"
        if action.default is None:
            return f"{text} (default none)"
        shown = " ".join(map(str, action.default)) if isinstance(action.default, list) else action.default
        return f"{text} (default {shown})".replace("%", "%%")


class RawHelpFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """``HelpFormatter`` for a command whose description is laid out by hand."""


def finite_float(text: str) -> float:
    """The type of every float option: nan and inf are refused when parsing, naming the flag.

    Ranges (lr > 0, dropout in [0, 1)) are checked by the config classes, whose
    errors name the flags too.
    """
    v = float(text)  # a ValueError here reads "argument --lr: invalid float value: 'x'"
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


finite_float.__name__ = "float"


_TRACKING: dict[type, type] = {}


def track_given(parser: argparse.ArgumentParser) -> None:
    """Make ``parser`` record which of its options the command line gave (``given(args)``): a flag
    given with its default value counts, one left out does not (what ``--config FILE`` needs to know)."""
    for action in parser._actions:
        if action.option_strings and action.default is not argparse.SUPPRESS:
            cls = type(action)
            if cls not in _TRACKING:
                def call(self, parser, namespace, values, option_string=None, _base=cls):
                    _base.__call__(self, parser, namespace, values, option_string)
                    namespace._given = (*getattr(namespace, "_given", ()), self.dest)

                _TRACKING[cls] = type(f"Given{cls.__name__}", (cls,), {"__call__": call})
            action.__class__ = _TRACKING[cls]


def given(args: argparse.Namespace) -> set[str]:
    """The dests of the options given on the command line (of a parser set up with ``track_given``)."""
    return set(getattr(args, "_given", ()))


def load_config_file(path: str, kind: str) -> dict:
    """The settings of ``--config FILE``: a run's config.json (``{"kind": ..., "config": {...}}``, as
    the trainer and a study write it) or a plain JSON object of config fields."""
    import json

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"--config {path}: not a JSON file ({e})") from None
    if isinstance(data, dict) and isinstance(data.get("config"), dict):
        if data.get("kind") not in (None, kind):
            raise ValueError(f"--config {path}: expected a {kind} run's config, got a {data['kind']} one")
        data = data["config"]
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a JSON object of settings, got {type(data).__name__}")
    return data


def config_settings(args: argparse.Namespace, names: set[str], kind: str) -> dict:
    """The config fields (``names``) a train command asks for: its flags, or with ``--config FILE``
    the file's settings, with the flags given beside it overriding them."""
    flags = {k: v for k, v in vars(args).items() if k in names}
    if not getattr(args, "config", None):
        return flags
    out = load_config_file(args.config, kind)
    out.update({k: flags[k] for k in given(args) if k in flags})
    return out


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings from the library, as one line each (not Python's two-line form)."""
    text = str(message)
    text = text[len("warning: "):] if text.startswith("warning: ") else text
    print(f"normlab: warning: {text}", file=file or sys.stderr)


def _how_to_go_on(args: argparse.Namespace) -> str:
    """How to continue a training run that stopped half-way ('' for other commands)."""
    out = getattr(args, "out", None)
    if getattr(args, "config", None) and "out" not in given(args):  # the run's folder is the file's
        try:
            out = load_config_file(args.config, args.group).get("out", out)
        except (OSError, ValueError):
            pass
    if getattr(args, "group", None) in ("resnet", "ner") and getattr(args, "func", None) and out:
        from normlab.files import LAST

        if (Path(out) / LAST).exists():
            return f"rerun with --resume to continue from {Path(out) / LAST}"
        return f"rerun the same command to start {out} afresh"
    if getattr(args, "group", None) == "study" and out:
        return f"rerun the same command to continue the study in {out}"
    return ""


def _interrupted_message(args: argparse.Namespace) -> str:
    how = _how_to_go_on(args)
    if how.startswith("rerun with --resume"):
        return f"normlab: interrupted; {how}"
    if how and getattr(args, "group", None) != "study":
        return f"normlab: interrupted before the first checkpoint; {how}"
    return "normlab: interrupted"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="normlab", formatter_class=HelpFormatter,
        description=(
            "Reproduce two classic studies: normalization layers in CIFAR ResNets "
            "(normlab resnet, normlab study resnet) and BiLSTM-CRF named-entity "
            "tagging on GMB (normlab ner, normlab study ner). Every run writes a "
            "directory with config.json, metrics.jsonl, checkpoints, summary.json and plots."
        ),
    )
    from normlab import __version__

    parser.add_argument("--version", action="version", version=f"normlab {__version__}")
    sub = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    for name in GROUPS:
        module = importlib.import_module(f"normlab.cli.{name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    old_show = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        return int(args.func(args) or 0)
    except ValueError as e:
        print(f"normlab: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:  # a path that cannot be read or written (missing, a folder, no permission)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):  # not bad input: the run stopped, and can go on
            where = f"{e.filename}: " if getattr(e, "filename", None) else ""
            how = _how_to_go_on(args)
            print(f"normlab: error: {where}no space left on device; free some space"
                  + (f", then {how}" if how else ""), file=sys.stderr)
            return EXIT_FAILED
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"normlab: error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(_interrupted_message(args), file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        warnings.showwarning = old_show
