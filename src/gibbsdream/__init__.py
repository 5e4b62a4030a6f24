"""gibbsdream: train discrete generative models and steer how they generate."""

__version__ = "0.1.0"

# The exports are imported when first used (PEP 562), not with the package: the command line then
# starts without PyTorch, so `--help` is quick and Ctrl+C during start-up reaches cli.main's handler.
_EXPORTS = {
    "ImageCodec": "data",
    "StringCodec": "data",
    "UsageError": "errors",
    "RBM": "models",
    "OrderlessNADE": "models",
    "Chain": "sampling",
    "sample": "sampling",
    "load": "api",
    "generate": "api",
    "inpaint": "api",
    "evaluate": "api",
    "export_split": "api",
    "train": "api",
    "RBMConfig": "models",
    "NADEConfig": "models",
}

__all__ = [
    "RBM",
    "Chain",
    "ImageCodec",
    "NADEConfig",
    "OrderlessNADE",
    "RBMConfig",
    "StringCodec",
    "UsageError",
    "__version__",
    "evaluate",
    "export_split",
    "generate",
    "inpaint",
    "load",
    "sample",
    "train",
]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gibbsdream' has no attribute {name!r}")
    import importlib  # the exports load on first use (see _EXPORTS)

    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_EXPORTS])
