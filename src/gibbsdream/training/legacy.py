"""Trainer configs that still accept the model fields they held before ``Model(config)``.

A trainer's config holds training settings only; the model's shape is the model's config. Older
callers (``RBMTrainConfig(num_hidden=64)``, ``NADETrainConfig(width=8).model_config(1, 17)``) and
older checkpoints, whose ``config.json`` "training" entry repeats the model fields, still pass
them: :func:`accepts_model_fields` takes them aside into ``model_fields``, which is not a dataclass
field, so it is neither saved with the training settings nor compared.
"""

from __future__ import annotations

import dataclasses
import functools


def accepts_model_fields(model_config: type, names: tuple[str, ...]):
    """Class decorator for a trainer config dataclass: its ``__init__`` also takes the keywords
    ``names`` (fields of the ``model_config`` dataclass), kept in ``self.model_fields`` and read back
    as attributes (the model config's default where one was not given)."""
    defaults = {f.name: f.default for f in dataclasses.fields(model_config) if f.name in names}

    def decorate(cls):
        init = cls.__init__

        @functools.wraps(init)
        def __init__(self, *args, **kwargs):
            given = {name: kwargs.pop(name) for name in names if name in kwargs}
            init(self, *args, **kwargs)
            self.model_fields = given

        def __getattr__(self, name):  # only called for names that are not attributes
            if name in defaults:
                return self.__dict__.get("model_fields", {}).get(name, defaults[name])
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

        cls.__init__, cls.__getattr__ = __init__, __getattr__
        return cls

    return decorate
