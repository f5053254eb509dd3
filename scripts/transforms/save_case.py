"""``SaveCaseImaged``: one case output written as ``<output_dir>/<case>_<postfix>.nii.gz``, atomically."""

from __future__ import annotations

from monai.config import KeysCollection, PathLike
from monai.transforms import SaveImaged

from scripts.data.naming import CaseFolderLayout
from scripts.data.writers import AtomicNibabelWriter

__all__ = ["SaveCaseImaged"]


class SaveCaseImaged(SaveImaged):
    """
    ``SaveImaged`` of one key in the input geometry, named by ``scripts.data.naming.output_path`` (``ircad_1.1``
    stays ``ircad_1.1``) and written to a temporary file that is renamed into place (``AtomicNibabelWriter``).

    Args:
        keys: the one key to save, channel-first ``(1, H, W, D)`` in the input geometry (after ``Invertd``).
        output_dir: the output folder.
        postfix: ``<case>_<postfix><output_ext>``.
        output_dtype: data type on disk (e.g. ``numpy.uint8`` for a mask, ``numpy.float32`` for a map).
        output_ext: file extension, ``.nii.gz`` by default.
        kwargs: further ``SaveImaged`` arguments.

    Raises:
        ValueError: when ``keys`` names more than one key or ``postfix`` is empty.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: PathLike,
        postfix: str,
        output_dtype=None,
        output_ext: str = ".nii.gz",
        **kwargs,
    ) -> None:
        if not postfix:
            raise ValueError("postfix must not be empty: it tells the outputs of a case apart")
        layout = CaseFolderLayout(output_dir, postfix, output_ext)
        super().__init__(
            keys,
            output_ext=output_ext,
            output_dtype=output_dtype,
            resample=False,
            squeeze_end_dims=True,
            writer=AtomicNibabelWriter,
            folder_layout=layout,
            **kwargs,
        )
        if len(self.keys) != 1:
            raise ValueError(f"{type(self).__name__} saves one key, got {self.keys}")
        self.layout = layout
        """Names the file; ``layout.output_dir`` may be pointed elsewhere (batch inference stages there)."""
        self.postfix = postfix
        self.output_ext = output_ext
