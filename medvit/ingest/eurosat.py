"""EuroSAT source: one 13-band 64 x 64 GeoTIFF per image, one folder per class (Helber et al., 2019).

Layout: ``<raw>/<Class>/<Class>_<n>.tif`` (``AnnualCrop``, ``Forest``, ...), or the
same one folder deeper (``<raw>/EuroSAT_MS/<Class>/...``). The class is the
image's folder name; the single label becomes a multi-hot row over the class
folders found (sorted). Bands inside each file are B01..B12, then B8A last
(``EUROSAT_BANDS``). EuroSAT carries no scene or tile id, so every image is its
own split group. A file outside a class folder (a folder holding ``.tif`` images) has no class:
rejected.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medvit.config import IngestConfig
from medvit.errors import UserError
from medvit.ingest.bands import EUROSAT_BANDS, resolve_bands
from medvit.ingest.patches import PatchSource, PatchTask
from medvit.ingest.source import find_files, relative_keys

IMAGE_SIZE = 64  # px: every EuroSAT image is 64 x 64 at 10 m


class EuroSatSource(PatchSource):
    """EuroSAT multispectral: class folders of 13-band GeoTIFFs."""

    desc = "ingest eurosat"
    fmt = "eurosat"

    def __init__(self, raw: Path, labels: Path, tmp: Path, cfg: IngestConfig) -> None:
        super().__init__(raw, labels, tmp, cfg)
        self._bands = resolve_bands(cfg.satellite.bands, EUROSAT_BANDS, self.fmt)

    @classmethod
    def default_labels(cls, raw: Path, cfg: IngestConfig) -> Path:
        """The raw folder: the class is each image's folder."""
        return raw

    @property
    def band_names(self) -> tuple[str, ...]:
        """The selected bands, canonical names."""
        return self._bands

    def file_indexes(self) -> tuple[int, ...]:
        """The selected bands' positions in EuroSAT's file band order (B8A last)."""
        return tuple(EUROSAT_BANDS.index(b) + 1 for b in self._bands)

    def patch_size(self) -> int:
        """64 px."""
        return IMAGE_SIZE

    def list_inputs(self) -> list[Path]:
        """Every non-hidden file under raw (one image each).

        Raises:
            UserError: no file, or two images with the same file name (ids are file stems).
        """
        self.files = find_files(self.raw)
        if not self.files:
            raise UserError(f"{self.raw}: no EuroSAT image found (expected <Class>/<Class>_<n>.tif)")
        stems = [p.stem for p in self.files]
        if len(set(stems)) != len(stems):
            dup = sorted({s for s in stems if stems.count(s) > 1})
            raise UserError(f"{self.raw}: several images share the name(s) {dup[:5]}; remove the copies")
        return self.files

    def read_labels(self) -> tuple[str, ...]:
        """The class folder names, sorted.

        Raises:
            UserError: every file lies directly in the raw folder (no class folders).
        """
        # A class folder holds images: a stray README beside the class folders names no class.
        self.class_dirs = {p.parent for p in self.files
                           if p.parent != self.raw and p.suffix.lower() in (".tif", ".tiff")}
        classes = sorted({d.name for d in self.class_dirs})
        if not classes:
            raise UserError(f"{self.raw}: no class folder holding .tif images; EuroSAT multispectral images lie "
                            "in one folder per class (AnnualCrop/AnnualCrop_1.tif, ...); the RGB JPEG release "
                            "(EuroSAT_RGB) has no bands to select: use the 13-band EuroSAT_MS")
        self.label_names = tuple(classes)
        return self.label_names

    def tasks(self) -> list[PatchTask | tuple[str, str]]:
        """One task per image; a file outside any class folder is rejected."""
        index = {n: i for i, n in enumerate(self.label_names)}
        out: list[PatchTask | tuple[str, str]] = []
        for key, path in zip(relative_keys(self.files, self.raw), self.files):
            if path.parent not in self.class_dirs:
                out.append((key, "no labels: not in a class folder"))
                continue
            labels = np.zeros(len(self.label_names), np.uint8)
            labels[index[path.parent.name]] = 1
            meta = {"id": path.stem, "group": path.stem, "class": path.parent.name}
            out.append(PatchTask(key, str(path), labels, meta))
        return out
