"""What a format parser hands to the matchers: the parts of one output to look inside."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .report import Finding

__all__ = ["Blob", "Content", "Image", "Sequence"]


@dataclass
class Blob:
    """Bytes inside an output that are not its raw bytes (a base64 string decoded, the
    pixels of an image), to search for input frames. ``where`` says where they came from."""

    data: bytes
    where: dict[str, Any]


@dataclass
class Sequence:
    """Numbers in an output in their order (a CSV column, a JSON array, a tensor's column).
    Element ``i`` is at ``base + i`` counted in ``unit`` (``csv_row``, ``item``, ``line``)."""

    values: np.ndarray
    where: dict[str, Any]
    unit: str = "item"
    base: int = 0
    codes: np.ndarray | None = None  # the values already rounded (hashing.quantise), if at hand


@dataclass
class Image:
    """A decoded image inside an output (a PNG, an image-shaped tensor), grayscale uint8."""

    gray: np.ndarray
    where: dict[str, Any]


@dataclass
class Content:
    """An output file as the parsers saw it."""

    kind: str                               # detected type: json, csv, png, safetensors, text, or what else
    allowed: bool = True
    findings: list[Finding] = field(default_factory=list)
    blobs: list[Blob] = field(default_factory=list)
    sequences: list[Sequence] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)
    csv_rows: int | None = None
    csv_columns: list[str] = field(default_factory=list)

    def block(self, kind: str, message: str, **where: Any) -> None:
        self.findings.append(Finding(kind=kind, message=message, where=where))
