"""The land-cover scene phantom: classes are spectrally separable."""

from __future__ import annotations

import numpy as np

from medvit.config import SampleSatellite
from medvit.sample.landcover import land_cover_scene

SATELLITE = SampleSatellite()


def test_classes_are_spectrally_separable() -> None:
    refl, labels = land_cover_scene(np.random.default_rng(1), 256, SATELLITE.classes, SATELLITE.band_names,
                                    swath_edge=False)
    pixels = refl.reshape(4, -1).T  # (N, B): B2, B3, B4, B8
    y = labels.ravel()
    means = np.stack([pixels[y == k].mean(0) for k in range(5)])
    ndvi = (means[:, 3] - means[:, 2]) / (means[:, 3] + means[:, 2])
    water, forest, cropland, urban, bare = range(5)
    assert ndvi[water] < 0 < ndvi[urban] < ndvi[cropland] < ndvi[forest] and ndvi[forest] > 0.7
    assert means[water, 3] < 500 and means[bare, 2] > means[urban, 2] > means[cropland, 2] > means[forest, 2]
    nearest = np.argmin(((pixels[:, None, :] - means[None]) ** 2).sum(-1), 1)
    assert (nearest == y).mean() > 0.8  # a nearest-mean pixel classifier already works
