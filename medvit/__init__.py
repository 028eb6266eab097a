"""medvit: fine-tune a partially frozen DeiT3-384 on DICOM and GeoTIFF imagery."""

__version__ = "0.1.0"
