"""BigEarthNet sources: Sentinel-2 patches with one GeoTIFF per band, one sample per patch.

v1 (Sumbul et al., IGARSS 2019): ``<raw>/<patch>/<patch>_<band>.tif`` for B01..B12
and B8A (120 x 120 px at 10 m, 60 x 60 at 20 m, 20 x 20 at 60 m) and
``<patch>_labels_metadata.json`` with the 43 CORINE Land Cover class names
(``labels``); the official split lists are ``train.csv``, ``val.csv`` and
``test.csv`` (one patch name per line) in the ``--labels`` folder (default: raw).

v2 (reBEN, Clasen et al. 2024): ``<raw>/<tile>/<patch>/<patch>_<band>.tif`` and
``metadata.parquet`` (``--labels``) with ``patch_id``, ``labels`` (19-class
names), ``split`` (``train``/``validation``/``test``), ``country`` and more.

A patch's tile is its name minus the last two ``_``-separated fields (the
patch's row and column in the tile); it is the split group, so no tile spans two
splits. The acquisition month (patch name timestamp) and, for v2, the country are
kept as manifest columns for subgroup analysis. ``n_input`` counts patches; a
missing band file, an unreadable band or bands on different footprints reject
the patch, naming the band.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medvit.config import IngestConfig
from medvit.errors import UserError
from medvit.ingest.bands import BIGEARTHNET_BANDS, RESOLUTION_M, resolve_bands
from medvit.ingest.labels import csv_rows
from medvit.ingest.patches import PatchSource, PatchTask
from medvit.ingest.source import relative_keys

log = logging.getLogger(__name__)

PATCH_METERS = 1200  # every BigEarthNet patch covers 1.2 x 1.2 km
LABELS_SUFFIX = "_labels_metadata.json"

# The 43 CORINE Land Cover level-3 classes of BigEarthNet v1, in the data set's order.
CLC43: tuple[str, ...] = (
    "Continuous urban fabric", "Discontinuous urban fabric", "Industrial or commercial units",
    "Road and rail networks and associated land", "Port areas", "Airports", "Mineral extraction sites",
    "Dump sites", "Construction sites", "Green urban areas", "Sport and leisure facilities",
    "Non-irrigated arable land", "Permanently irrigated land", "Rice fields", "Vineyards",
    "Fruit trees and berry plantations", "Olive groves", "Pastures", "Annual crops associated with permanent crops",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas", "Broad-leaved forest", "Coniferous forest", "Mixed forest", "Natural grassland",
    "Moors and heathland", "Sclerophyllous vegetation", "Transitional woodland/shrub", "Beaches, dunes, sands",
    "Bare rock", "Sparsely vegetated areas", "Burnt areas", "Inland marshes", "Peatbogs", "Salt marshes", "Salines",
    "Intertidal flats", "Water courses", "Water bodies", "Coastal lagoons", "Estuaries", "Sea and ocean",
)

# The 19-class nomenclature and the CLC43 classes each one merges: Sumbul et al., "BigEarthNet Dataset with
# a New Class-Nomenclature for Remote Sensing Image Understanding", arXiv:2001.06372, Table I. The 11 classes
# not listed (road/rail, port, airports, mineral extraction, dump and construction sites, green urban areas,
# sport and leisure, bare rock, burnt areas, intertidal flats) have no 19-class counterpart and are dropped.
BEN19: dict[str, tuple[str, ...]] = {
    "Urban fabric": ("Continuous urban fabric", "Discontinuous urban fabric"),
    "Industrial or commercial units": ("Industrial or commercial units",),
    "Arable land": ("Non-irrigated arable land", "Permanently irrigated land", "Rice fields"),
    "Permanent crops": ("Vineyards", "Fruit trees and berry plantations", "Olive groves",
                        "Annual crops associated with permanent crops"),
    "Pastures": ("Pastures",),
    "Complex cultivation patterns": ("Complex cultivation patterns",),
    "Land principally occupied by agriculture, with significant areas of natural vegetation": (
        "Land principally occupied by agriculture, with significant areas of natural vegetation",),
    "Agro-forestry areas": ("Agro-forestry areas",),
    "Broad-leaved forest": ("Broad-leaved forest",),
    "Coniferous forest": ("Coniferous forest",),
    "Mixed forest": ("Mixed forest",),
    "Natural grassland and sparsely vegetated areas": ("Natural grassland", "Sparsely vegetated areas"),
    "Moors, heathland and sclerophyllous vegetation": ("Moors and heathland", "Sclerophyllous vegetation"),
    "Transitional woodland, shrub": ("Transitional woodland/shrub",),
    "Beaches, dunes, sands": ("Beaches, dunes, sands",),
    "Inland wetlands": ("Inland marshes", "Peatbogs"),
    "Coastal wetlands": ("Salt marshes", "Salines"),
    "Inland waters": ("Water courses", "Water bodies"),
    "Marine waters": ("Coastal lagoons", "Estuaries", "Sea and ocean"),
}
TO_BEN19: dict[str, str] = {old: new for new, olds in BEN19.items() for old in olds}

OFFICIAL_SPLITS: dict[str, str] = {"train": "train", "validation": "val", "val": "val", "test": "test"}
_DATE = re.compile(r"_(\d{4})(\d{2})(\d{2})T\d{6}(?:_|$)")


def tile_of(patch: str) -> str:
    """The patch's tile: its name minus the last two ``_``-separated fields (row and column in the tile)."""
    parts = patch.split("_")
    return "_".join(parts[:-2]) if len(parts) > 2 else patch


def month_of(patch: str) -> int | str:
    """The acquisition month (1-12) from the patch name's ``YYYYMMDDTHHMMSS`` timestamp, else ``unknown``."""
    match = _DATE.search(patch)
    return int(match.group(2)) if match and 1 <= int(match.group(2)) <= 12 else "unknown"


def find_patches(root: Path, exclude: Path) -> tuple[list[Path], int]:
    """Patch folders under ``root`` (folders holding a ``.tif`` or a labels JSON), sorted; other files counted.

    Returns:
        (patch folders, files outside any patch folder, ``exclude`` and hidden files not counted).
    """
    patches, others = [], 0
    skip = os.path.abspath(exclude)
    for dirpath, dirnames, filenames in os.walk(os.path.abspath(root)):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        names = [n for n in filenames if not n.startswith(".") and os.path.join(dirpath, n) != skip]
        if any(n.lower().endswith((".tif", ".tiff")) or n.endswith(LABELS_SUFFIX) for n in names):
            patches.append(Path(dirpath))
        else:
            others += len(names)
    return sorted(patches), others


class BigEarthNetSource(PatchSource):
    """What both BigEarthNet versions share: patch folders, one file per band, the tile as group."""

    desc = "ingest bigearthnet"

    def __init__(self, raw: Path, labels: Path, tmp: Path, cfg: IngestConfig) -> None:
        super().__init__(raw, labels, tmp, cfg)
        self._bands = resolve_bands(cfg.satellite.bands, BIGEARTHNET_BANDS, self.fmt)
        self.patch_labels: dict[str, np.ndarray] = {}    # patch id -> (L,) 0/1
        self.extra_columns: dict[str, dict[str, Any]] = {}  # patch id -> extra manifest columns
        self.rejected_labels: dict[str, str] = {}         # patch id -> reject reason found while labelling

    @property
    def band_names(self) -> tuple[str, ...]:
        """The selected bands, canonical names."""
        return self._bands

    def patch_size(self) -> int:
        """120 px with a 10 m band selected, 60 with 20 m at best, 20 with 60 m bands only."""
        return PATCH_METERS // min(RESOLUTION_M[b] for b in self._bands)

    def list_inputs(self) -> list[Path]:
        """The patch folders under raw.

        Raises:
            UserError: no patch folder, or two patches with the same name (their ids would clash).
        """
        self.patches, others = find_patches(self.raw, self.labels)
        if not self.patches:
            raise UserError(f"{self.raw}: no BigEarthNet patch folder (a folder of <patch>_<band>.tif files) "
                            f"found; check --raw and ingest.satellite.format ({self.fmt})")
        names = pd.Series([p.name for p in self.patches])
        dup = sorted(set(names[names.duplicated()]))
        if dup:
            raise UserError(f"{self.raw}: several patch folders share the name(s) {dup[:5]}; remove the copies")
        self.counters["files_outside_patches"] = others
        if others:
            log.warning("%s: %d file(s) outside any patch folder (not inputs)", self.raw, others)
        return self.patches

    def tasks(self) -> list[PatchTask | tuple[str, str]]:
        """Per patch folder: its task, or the reject reason (no labels, not in the split); bands are found later."""
        out: list[PatchTask | tuple[str, str]] = []
        for key, folder in zip(relative_keys(self.patches, self.raw), self.patches):
            patch = folder.name
            if patch in self.rejected_labels:
                out.append((key, self.rejected_labels[patch]))
                continue
            if patch not in self.patch_labels:
                out.append((key, self.no_labels_reason(patch)))
                continue
            if self.cfg.satellite.use_official_split and patch not in self.official:
                out.append((key, "not in the official split: listed in none of the split files"))
                continue
            meta = {"id": patch, "group": tile_of(patch), "tile": tile_of(patch), "month": month_of(patch),
                    "country": "unknown", **self.extra_columns.get(patch, {})}
            out.append(PatchTask(key, str(folder), self.patch_labels[patch], meta))
        return out

    def no_labels_reason(self, patch: str) -> str:
        """The reject reason of a patch without labels."""
        return "no labels"


class BigEarthNetV1Source(BigEarthNetSource):
    """BigEarthNet v1: per-patch ``<patch>_labels_metadata.json`` with CORINE class names."""

    fmt = "bigearthnet-v1"

    @classmethod
    def default_labels(cls, raw: Path, cfg: IngestConfig) -> Path:
        """The raw folder: labels lie in each patch folder; the official split files beside the patches."""
        return raw

    def read_labels(self) -> tuple[str, ...]:
        """Every patch's JSON labels (43 CORINE classes, or the 19-class nomenclature when asked for).

        Raises:
            UserError: a class name that is not one of BigEarthNet's 43; official split files missing.
        """
        scfg = self.cfg.satellite
        to19 = scfg.nomenclature == "bigearthnet-19"
        found: dict[str, list[str]] = {}
        for folder in self.patches:
            path = folder / f"{folder.name}{LABELS_SUFFIX}"
            if not path.is_file():
                self.rejected_labels[folder.name] = f"no labels: no {folder.name}{LABELS_SUFFIX}"
                continue
            try:
                names = json.loads(path.read_text(encoding="utf-8"))["labels"]
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    raise TypeError
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                self.rejected_labels[folder.name] = "invalid labels file: no 'labels' list of class names"
                continue
            unknown = sorted(set(names) - set(CLC43))
            if unknown:
                raise UserError(f"{path}: 'labels' holds {unknown}, not BigEarthNet CORINE class names; fix the "
                                "file or use ingest.satellite.format: bigearthnet-v2 for 19-class labels")
            found[folder.name] = sorted({TO_BEN19[n] for n in names if n in TO_BEN19}) if to19 else names
        order = tuple(BEN19) if to19 else CLC43
        present = {n for names in found.values() for n in names}
        label_names = tuple(n for n in order if n in present)
        if not label_names:
            raise UserError(f"{self.raw}: no patch has a label{' in the 19-class nomenclature' if to19 else ''}")
        index = {n: i for i, n in enumerate(label_names)}
        for patch, names in found.items():
            y = np.zeros(len(label_names), np.uint8)
            y[[index[n] for n in names]] = 1
            self.patch_labels[patch] = y
        if scfg.use_official_split:
            self.official = read_split_lists(self.labels if self.labels.is_dir() else self.raw)
        return label_names


def label_list(cell: Any) -> list[Any] | None:
    """A metadata ``labels`` cell as a list (a parquet list column reads as arrays); None if not list-like."""
    if isinstance(cell, str):
        return [cell]
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return []
    try:
        return list(cell)
    except TypeError:
        return None


def read_split_lists(folder: Path) -> dict[str, str]:
    """BigEarthNet v1's official split: ``train.csv``, ``val.csv``, ``test.csv``, one patch name per line.

    Raises:
        UserError: a split file missing, or a patch listed in two splits.
    """
    out: dict[str, str] = {}
    for split in ("train", "val", "test"):
        path = folder / f"{split}.csv"
        if not path.is_file():
            raise UserError(f"{path}: official split file not found; put BigEarthNet's train.csv, val.csv and "
                            "test.csv there (--labels DIR) or set ingest.satellite.use_official_split: false")
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            patch = line.split(",")[0].strip()
            if not patch:
                continue
            if out.get(patch, split) != split:
                raise UserError(f"{path}: line {i + 1} lists a patch that {out[patch]}.csv lists too; "
                                "a patch belongs to one split")
            out[patch] = split
    return out


class BigEarthNetV2Source(BigEarthNetSource):
    """BigEarthNet v2 (reBEN): ``metadata.parquet`` with 19-class labels, split and country per patch."""

    fmt = "bigearthnet-v2"

    @classmethod
    def default_labels(cls, raw: Path, cfg: IngestConfig) -> Path:
        """``<raw>/metadata.parquet``."""
        return raw / "metadata.parquet"

    def read_labels(self) -> tuple[str, ...]:
        """Read ``metadata.parquet``: labels, official split and country per ``patch_id``.

        Raises:
            FileNotFoundError: no such file.
            UserError: unreadable or empty, missing columns, duplicate ``patch_id``, class names outside
                the 19-class nomenclature, split values other than train/validation/test.
        """
        path = self.labels
        if not path.is_file():
            raise FileNotFoundError(f"{path}: BigEarthNet metadata not found; pass --labels metadata.parquet")
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError) as err:
            raise UserError(f"{path}: not a readable parquet file ({type(err).__name__}); re-download "
                            "BigEarthNet's metadata.parquet") from None
        if frame.empty:
            raise UserError(f"{path}: the metadata table has no rows; re-download BigEarthNet's metadata.parquet "
                            "(it lists every patch with its labels and split)")
        need = ["patch_id", "labels"] + (["split"] if self.cfg.satellite.use_official_split else [])
        missing = [c for c in need if c not in frame.columns]
        if missing:
            raise UserError(f"{path}: missing column(s) {missing}; found {list(frame.columns)}")
        ids = frame["patch_id"].astype(str).str.strip()
        dup = ids.duplicated(keep=False)
        if dup.any():
            raise UserError(f"{path}: duplicate patch_id on rows {csv_rows(np.flatnonzero(dup))}")
        cells, bad = [], []
        for i, cell in enumerate(frame["labels"]):
            names = label_list(cell)
            if names is None or not all(isinstance(n, str) and n in BEN19 for n in names):
                bad.append(i)
            cells.append(names or [])
        if bad:
            raise UserError(f"{path}: rows {csv_rows(bad)} (row 2 = first row) have labels outside BigEarthNet's "
                            "19-class nomenclature; fix the file or use ingest.satellite.format: bigearthnet-v1")
        present = {n for names in cells for n in names}
        label_names = tuple(n for n in BEN19 if n in present)
        if not label_names:
            raise UserError(f"{path}: no row has a label")
        index = {n: i for i, n in enumerate(label_names)}
        for pid, names in zip(ids, cells):
            y = np.zeros(len(label_names), np.uint8)
            y[[index[n] for n in names]] = 1
            self.patch_labels[pid] = y
        if "country" in frame.columns:
            for pid, country in zip(ids, frame["country"].astype(str).str.strip()):
                self.extra_columns[pid] = {"country": country or "unknown"}
        if self.cfg.satellite.use_official_split:
            splits = frame["split"].astype(str).str.strip().str.lower()
            wrong = np.flatnonzero(~splits.isin(list(OFFICIAL_SPLITS)))
            if wrong.size:
                raise UserError(f"{path}: rows {csv_rows(wrong)} have a split other than train/validation/test")
            self.official = {pid: OFFICIAL_SPLITS[s] for pid, s in zip(ids, splits)}
        on_disk = {p.name for p in self.patches}
        self.counters["labels_without_images"] = int(sum(pid not in on_disk for pid in ids))
        if self.counters["labels_without_images"]:
            log.warning("%s: %d patch(es) listed but not found under %s (ignored; counted in report.json)",
                        path, self.counters["labels_without_images"], self.raw)
        return label_names

    def no_labels_reason(self, patch: str) -> str:
        """A patch folder the metadata does not list."""
        return f"no labels: not listed in {self.labels.name}"
