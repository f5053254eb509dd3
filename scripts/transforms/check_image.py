"""``CheckImaged``: refuse, naming the file, an image that is not a usable CT volume (``scripts.data.checks``)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from scripts.data.checks import image_problems
from scripts.data.errors import InputError

__all__ = ["CheckImaged"]


class CheckImaged(MapTransform):
    """
    Dictionary transform that raises ``InputError`` when ``image_problems`` finds anything in ``data[key]``.

    Place it right after ``LoadImaged`` + ``EnsureChannelFirstd``; the error names the source file
    (``data[key].meta["filename_or_obj"]``). Data passes through unchanged otherwise.
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False, **image_problems_kwargs: Any) -> None:
        super().__init__(keys, allow_missing_keys)
        self.image_problems_kwargs = image_problems_kwargs

    def __call__(self, data: Mapping[Hashable, Any]) -> Mapping[Hashable, Any]:
        for key in self.key_iterator(data):
            image = data[key]
            path = str(image.meta.get("filename_or_obj", key)) if isinstance(image, MetaTensor) else str(key)
            problems = image_problems(image, path=path, **self.image_problems_kwargs)
            if problems:
                raise InputError(path, "; ".join(problems))
        return data
