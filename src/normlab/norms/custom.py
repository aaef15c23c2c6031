"""A user's own normalization layer, named by its import path ``"module:Class"``.

``normlab resnet train --norm mypkg.norms:RMSNorm2d`` trains with the class ``RMSNorm2d`` of
the module ``mypkg.norms``, beside the built-in names of ``NORM_NAMES``. The class is imported
only when such a spec is named, from ``sys.path`` as Python finds any module: an installed
package, or a folder on ``PYTHONPATH`` (``python -m normlab`` also finds modules in the current
directory; the ``normlab`` script does not). The spec string is what the config, config.json
and every checkpoint record; the class must import wherever the run is resumed or trained
(on every worker of a Ray cluster too).

The contract is the built-in layers' own: ``Class(num_channels=C)`` builds a layer for C
channels, and it maps (B, C, H, W) activations to a tensor of the same shape. ``check_norm``
tries both before a run starts, so that a bad class is one clear line, not a traceback
mid-training.
"""

from __future__ import annotations

import importlib
import inspect
import re

import torch
from torch import nn

# "pkg.module:Class" (a dotted module path, a colon, a class name or dotted attribute path).
_SPEC = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")

# The channel counts a check builds the layer for: the CIFAR ResNet's three stage widths.
CHECK_CHANNELS = (16, 32, 64)


def is_norm_spec(name: object) -> bool:
    """Whether ``name`` is spelled as a ``"module:Class"`` import path (nothing is imported)."""
    return isinstance(name, str) and bool(_SPEC.match(name))


def import_norm(spec: str) -> type[nn.Module]:
    """Import the class ``spec`` (``"module:Class"``) names, and check that it is an ``nn.Module``.

    Raises:
        ValueError: one line for a badly spelled spec, a module that does not import, a
            missing attribute, or something that is not an ``nn.Module`` subclass.
    """
    if not is_norm_spec(spec):
        raise ValueError(f"--norm {spec!r}: expected an import path 'module:Class' such as mypkg.norms:RMSNorm2d")
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise ValueError(f"--norm {spec}: cannot import module {module_name!r} (no module named {e.name!r} "
                             "on sys.path); install it or put its folder on PYTHONPATH") from None
        raise ValueError(f"--norm {spec}: importing module {module_name!r} failed: {_one_line(e)}") from e
    except Exception as e:  # noqa: BLE001 - any error the user's module raises while it imports
        raise ValueError(f"--norm {spec}: importing module {module_name!r} failed: {_one_line(e)}") from e
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            found = sorted(n for n, v in vars(module).items()
                           if inspect.isclass(v) and issubclass(v, nn.Module) and v.__module__ == module.__name__)
            raise ValueError(f"--norm {spec}: module {module_name!r} has no attribute {attr!r} "
                             f"(its nn.Module classes: {', '.join(found) or 'none'})")
        obj = getattr(obj, part)
    if not (inspect.isclass(obj) and issubclass(obj, nn.Module)):
        kind = f"class {obj.__name__}" if inspect.isclass(obj) else type(obj).__name__
        raise ValueError(f"--norm {spec}: expected a torch.nn.Module subclass, got a {kind}")
    return obj


def build_norm(spec: str, num_channels: int, **kw) -> nn.Module:
    """``Class(num_channels=num_channels, **kw)`` for the class ``spec`` names (see ``import_norm``).

    Raises:
        ValueError: for the errors of ``import_norm``, a class that takes no ``num_channels``
            argument, or a constructor that fails.
    """
    cls = import_norm(spec)
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # no signature to read (a C extension): let the call decide
        params = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if params and "num_channels" not in params and not takes_any:
        raise ValueError(f"--norm {spec}: expected a class built as {cls.__name__}(num_channels=C), "
                         f"but it takes ({', '.join(params)})")
    try:
        return cls(num_channels=num_channels, **kw)
    except Exception as e:  # noqa: BLE001 - the user's constructor
        raise ValueError(f"--norm {spec}: {cls.__name__}(num_channels={num_channels}) failed: {_one_line(e)}") from e


def check_norm(spec: str) -> type[nn.Module]:
    """Check that the layer ``spec`` names can replace a built-in norm, and return its class.

    Builds it for each of ``CHECK_CHANNELS`` channels and runs it, in training and in eval
    mode, on a (2, C, 4, 4) tensor, which must come back as a tensor of that shape. The global RNG is
    left as it was (the constructor's initialization draws from a forked one).

    Raises:
        ValueError: one line, for the errors of ``build_norm``, a forward that fails, or
            an output that is not a tensor of the input's shape.
    """
    cls = import_norm(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for c in CHECK_CHANNELS:
            layer = build_norm(spec, c)
            x = torch.randn(2, c, 4, 4)  # shape: (B, C, H, W)
            for training in (True, False):
                try:
                    with torch.no_grad():
                        y = layer.train(training)(x)
                except Exception as e:  # noqa: BLE001 - the user's forward
                    raise ValueError(f"--norm {spec}: {cls.__name__}(num_channels={c}) failed on a (2, {c}, 4, 4) "
                                     f"tensor: {_one_line(e)}") from e
                if not torch.is_tensor(y):
                    raise ValueError(f"--norm {spec}: expected {cls.__name__} to return a tensor, "
                                     f"got {type(y).__name__}")
                if y.shape != x.shape:
                    raise ValueError(f"--norm {spec}: expected {cls.__name__} to keep the activation's shape "
                                     f"{tuple(x.shape)}, got {tuple(y.shape)}")
    return cls


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__
