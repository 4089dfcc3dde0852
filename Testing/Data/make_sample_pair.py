"""The bundled sample pair: the real T1 (moving) and a copy deformed by a known smooth field of at most
8 mm (fixed, Testing/Data/sample_fixed.nii.gz). The field is not stored (11 MB): it is regenerated
exactly from its seed by :func:`sample_pair`. Run from the repository root to (re)write the file, and
optionally write the true field (LPS mm vector image) somewhere:

    python Testing/Data/make_sample_pair.py [--true-field OUT.nrrd]
"""

import argparse
from pathlib import Path

import SimpleITK as sitk

from DIRVNetLib.data.deformations import deform_image

HERE = Path(__file__).resolve().parent
MOVING = HERE / "KmeansTest_T1UCharRaw.nii.gz"
FIXED = HERE / "sample_fixed.nii.gz"
MAX_MM, SEED = 8.0, 2024


def sample_pair():
    """``(fixed, moving, true displacement)``: pull convention, LPS mm, moving(p + u(p)) = fixed(p)."""
    moving = sitk.ReadImage(str(MOVING), sitk.sitkFloat32)
    fixed, true = deform_image(moving, max_mm=MAX_MM, seed=SEED)
    return fixed, moving, true


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--true-field", help="also write the true displacement here")
    args = parser.parse_args()
    fixed, _, true = sample_pair()
    sitk.WriteImage(fixed, str(FIXED), True)
    if args.true_field:
        Path(args.true_field).parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(sitk.Cast(true, sitk.sitkVectorFloat32), args.true_field, True)
