"""Readers of the raw inputs (the only modules that import pydicom, rasterio or fiona) and atomic writes.

* ``dicom``: parse a DICOM file, its header and its frames as (1, H, W) float32 in [0, 1];
  every pydicom call runs inside ``pydicom_reading`` (quiet, no value validation).
* ``dicom_intensity``: the PS3.3 chain (modality LUT, VOI, MONOCHROME1, colour to luma).
* ``dicom_values``: header values as strings through pydicom; ``DicomReject``.
* ``decoders``: the licence-compatible pixel decoder plugins per transfer syntax.
* ``geotiff``: windowed GeoTIFF reads: strips, nodata masks, label rasters (warped onto their scene's
  grid when theirs differs), chip geometry.
* ``vector``: polygon label layers (GeoJSON, GeoPackage) through Fiona: read, reproject onto a scene,
  rasterize per chip (supersampled coverage).
* ``atomic``: atomic file writes (a temporary file, then ``os.replace``).
"""
