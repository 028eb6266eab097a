"""What the ingest writes pixels with: the main process's streaming shard writer, a worker's part
writer (both write the bytes ``np.save(np.stack(images))`` would, without the stacked copy) and
the nodata masks kept until the fill value is known.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from medvit.data.cache import ShardWriter, check_cache_image, shard_path
from medvit.io.atomic import atomic_open, atomic_path


class StreamingShardWriter(ShardWriter):
    """``ShardWriter`` whose flush writes each image straight into the shard file.

    Same ``.npy`` bytes as ``np.save(np.stack(images))``, without the stacked
    copy: peak memory stays at one shard's images instead of two.
    """

    def flush(self) -> None:
        """Write the queued images as one shard."""
        if not self._buf:
            return
        path = shard_path(self.cache_dir, self._shard)
        with atomic_path(path) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                            shape=(len(self._buf), *self._buf[0].shape))
            for i, image in enumerate(self._buf):
                out[i] = image
            del out  # no msync: the rename publishes the file, the page cache writes it back
        self._buf = []
        self._shard += 1


class PartWriter:
    """Stream (C, H, W) float32 images into ``.npy`` part files of at most ``limit`` images each.

    A worker writes its block's samples itself, so no pixels cross the process
    boundary and the main process only renames finished parts into place. The
    header is written first for ``limit`` images and rewritten in place for the
    real count when the part closes (NumPy pads ``.npy`` headers so that the
    first axis can change without moving the data); the bytes equal
    ``np.save(np.stack(images))``.
    """

    def __init__(self, folder: Path, stem: str, limit: int) -> None:
        self.folder, self.stem, self.limit = folder, stem, limit
        self.parts: list[tuple[str, int]] = []   # (file name, number of images), closed parts in order
        self._file: BinaryIO | None = None
        self._shape: tuple[int, ...] = ()
        self._n = 0
        self._header_len = 0

    def add(self, image: np.ndarray) -> tuple[int, int]:
        """Append one image; return its (part, index)."""
        check_cache_image(image)
        if self._file is None or image.shape != self._shape or self._n >= self.limit:
            self._close_part()
            self._open(image.shape)
        assert self._file is not None
        self._file.write(np.ascontiguousarray(image).data)
        self._n += 1
        return len(self.parts), self._n - 1

    def close(self) -> list[tuple[str, int]]:
        """Finish the open part; return every part as (file name, number of images)."""
        self._close_part()
        return self.parts

    def abort(self) -> None:
        """Close and delete every part (the block failed; it is re-run file by file)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        for name in [*(n for n, _ in self.parts), self._name()]:
            (self.folder / name).unlink(missing_ok=True)

    def _name(self) -> str:
        return f"{self.stem}-{len(self.parts):03d}.npy"

    def _header(self, n: int) -> bytes:
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                  "shape": (n, *self._shape)})
        return buf.getvalue()

    def _open(self, shape: tuple[int, ...]) -> None:
        self._shape, self._n = shape, 0
        self._file = open(self.folder / self._name(), "wb")  # noqa: SIM115 - closed by _close_part/abort
        self._header_len = self._file.write(self._header(self.limit))

    def _close_part(self) -> None:
        if self._file is None:
            return
        header = self._header(self._n)
        if len(header) != self._header_len:  # pragma: no cover - numpy always pads the shape
            raise RuntimeError("npy header length changed with the image count")
        self._file.seek(0)
        self._file.write(header)
        self._file.close()
        self._file = None
        self.parts.append((self._name(), self._n))


def block_size(n_inputs: int, shard_size: int) -> int:
    """Inputs per worker block: ~64 blocks per run (load balance), 8 to ``shard_size`` each.

    It depends on the data and params only, never on the worker count, so the
    cache is byte-identical whatever machine runs the stage.
    """
    return max(1, min(shard_size, max(8, -(-n_inputs // 64))))


def decode_into_parts(shard_dir: Path, shard_size: int, name: str, tasks: Sequence[Any],
                      decode: Callable[[Any], Any]) -> tuple[list[Any], list[tuple[str, int]]]:
    """In a worker: ``decode`` each task and write its samples' images into part files ``.part-<name>``.

    Each result's samples keep only their (part, index) location (``sample.loc``), not the pixels.
    Returns (results, part file names); a failure removes the block's part files.
    """
    writer = PartWriter(shard_dir, f".part-{name}", shard_size)
    try:
        results = []
        for task in tasks:
            res = decode(task)
            for sample in res.samples:
                sample.loc = writer.add(sample.image)
                sample.image = None
            results.append(res)
        return results, writer.close()
    except BaseException:
        writer.abort()
        raise


def adopt_parts(parts: Sequence[tuple[str, int]], shard_dir: Path, tmp: Path, first_shard: int) -> list[int]:
    """In the main process: rename a block's part files (in ``shard_dir``) into shards ``first_shard``,
    ``first_shard + 1``, ... of the cache being built in ``tmp``; returns the shard numbers, in order."""
    shards = list(range(first_shard, first_shard + len(parts)))
    for (name, _), shard in zip(parts, shards):
        os.replace(shard_dir / name, shard_path(tmp, shard))
    return shards


class NodataMasks:
    """Packed (C, H, W) nodata masks of cached images, kept in a temporary file until the train mean is known.

    Nodata pixels are filled with the train-split mean after the splits are drawn,
    so they normalise to exactly 0; the masks wait on disk, not in memory.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO | None = open(path, "w+b")  # noqa: SIM115 - closed by close()
        self.spans: dict[tuple[int, int], tuple[int, int]] = {}  # (shard, index) -> (offset, length)

    def __len__(self) -> int:
        return len(self.spans)

    def add(self, loc: tuple[int, int], mask: bytes) -> None:
        """Keep the packed mask of the image at (shard, index) ``loc``."""
        assert self._file is not None
        self._file.seek(0, os.SEEK_END)
        self.spans[loc] = (self._file.tell(), len(mask))
        self._file.write(mask)

    def discard(self, loc: tuple[int, int]) -> None:
        """Forget the mask of ``loc`` (its row never reaches the manifest)."""
        self.spans.pop(loc, None)

    def fill(self, cache_dir: Path, value: np.ndarray) -> None:
        """Set every masked pixel to ``value`` (C,), one shard at a time (bounded memory)."""
        assert self._file is not None
        by_shard: dict[int, list[tuple[int, tuple[int, int]]]] = {}
        for (shard, index), span in self.spans.items():
            by_shard.setdefault(shard, []).append((index, span))
        for shard, items in sorted(by_shard.items()):
            path = shard_path(cache_dir, shard)
            arr = np.load(path)                                                     # (n, C, H, W)
            for index, (offset, length) in items:
                self._file.seek(offset)
                bits = np.unpackbits(np.frombuffer(self._file.read(length), np.uint8))
                bad = bits[: arr[index].size].reshape(arr[index].shape).astype(bool)  # (C, H, W) nodata
                arr[index][bad] = np.broadcast_to(value[:, None, None], arr[index].shape)[bad]
            with atomic_open(path, "wb") as f:
                np.save(f, arr)

    def close(self) -> None:
        """Close and delete the temporary file."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self.path.unlink(missing_ok=True)
