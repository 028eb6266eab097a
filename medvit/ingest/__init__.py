"""Turn raw DICOM / GeoTIFF files into the de-identified, sharded ingest cache.

``ingest(domain, raw, labels, out, cfg)`` (``run.py``) is the whole stage:

1. the domain's source (``registry.py``: one ``Source`` per data set format,
   ``source.py`` the interface; ``nih.py`` medical DICOM + ChestX-ray14 CSV,
   ``scenes.py`` GeoTIFF scenes + label rasters or tiles.csv; ``bigearthnet.py``
   and ``eurosat.py`` one sample per patch on ``patches.py``, band names in
   ``bands.py``) lists the input files (recursively, hidden files skipped;
   BigEarthNet: patch folders) and reads the labels
   (``labels.py``: shared CSV helpers); label-file problems that would make the
   cache wrong are fatal ``UserError``s naming rows, not values;
2. it plans the decode pass, which runs in worker processes (``pool.py``:
   ``ingest.workers``; ordered, with a bounded number of tasks in flight, and a
   task that kills its worker is re-run alone and rejected); each file ends up
   with >= 1 manifest rows XOR one ``rejects.csv`` row, and shards are numbered
   in input order (``writers.py``), so the cache is byte-identical for any
   number of workers;
3. ``finish.py``: group-aware multi-label stratified splits, train-split
   statistics, nodata filled with the train mean, manifest, rejects and report;
4. ``publish.py``: everything is written into a temporary folder beside ``out``
   and moved in with ``manifest.csv`` last: a killed ingest leaves either the
   old complete outputs or no manifest, never a mix DVC or finetune would accept.

``dicomweb.py`` is not a source: it pulls DICOM files from a PACS into a raw
folder that the medical source then reads.
"""

from medvit.ingest.run import ingest

__all__ = ["ingest"]
