"""Preprocessing every registration and every training image goes through: robust intensity
normalisation (numpy; every layer may import it)."""

from __future__ import annotations

import numpy as np


def normalise_intensity(image: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Map the ``low``-th and ``high``-th percentiles to 0 and 1 and clip (robust to outliers).
    Returns a new float32 array (computed in float32, in place: no float64 temporaries)."""
    lo, hi = np.percentile(image, [low, high])
    if hi <= lo:
        hi = lo + 1e-6
    out = np.array(image, dtype=np.float32)
    out -= np.float32(lo)
    out *= np.float32(1.0 / (hi - lo))
    return np.clip(out, 0.0, 1.0, out=out)
