"""
``MetaSafeSpacingd``: MONAI's ``Spacingd`` for data that carries other items named ``<key>_...``.

After resampling ``key`` from a NIfTI file, MONAI 1.6's ``Spacingd.__call__`` copies the image's metadata into
every item whose name starts with ``f"{key}_"`` (``d[meta_key].update(d[key].meta)``), the legacy
``image_meta_dict`` convention. MONAI Label's inference task puts ``image_path`` (a ``str``, the input file)
in the data, so ``Spacingd(keys="image")`` raised ``AttributeError: 'str' object has no attribute 'update'``
and the server answered HTTP 500. ``MetaSafeSpacingd`` sets such items aside for the call and puts them back
unchanged; metadata dictionaries are updated exactly as ``Spacingd`` updates them.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, MutableMapping
from typing import Any

from monai.transforms import Spacingd

__all__ = ["MetaSafeSpacingd"]


class MetaSafeSpacingd(Spacingd):
    """
    ``Spacingd`` (same arguments, same output, same inverse) that leaves alone every item named
    ``f"{key}_..."`` (for a key in ``keys``) that is not a mutable mapping, e.g. MONAI Label's
    ``image_path`` string; ``Spacingd`` would call ``.update`` on it.
    """

    def _set_aside(self, data: Mapping[Hashable, Any]) -> set[Hashable]:
        prefixes = tuple(f"{key}_" for key in self.keys)
        return {
            name
            for name, value in data.items()
            if isinstance(name, str)
            and name.startswith(prefixes)
            and name not in self.keys
            and not isinstance(value, MutableMapping)
        }

    def __call__(self, data: Mapping[Hashable, Any], lazy: bool | None = None) -> dict[Hashable, Any]:
        aside = self._set_aside(data)
        if not aside:
            return super().__call__(data, lazy=lazy)
        result = super().__call__({name: value for name, value in data.items() if name not in aside}, lazy=lazy)
        # the input's item order, with whatever Spacingd added at the end
        ordered = {
            name: data[name] if name in aside else result[name] for name in data if name in aside or name in result
        }
        ordered.update((name, value) for name, value in result.items() if name not in ordered)
        return ordered
