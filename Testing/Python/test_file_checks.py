"""Bad files of every reader are refused with a one-line error naming the file; whole files read as written."""

import gzip
import os

import numpy as np
import pytest
import SimpleITK as sitk

from DIRVNetLib.errors import InputImageError
from DIRVNetLib.io.filechecks import capture_itk_warnings
from DIRVNetLib.io.images import read_image, read_raw

FORMATS = ["nii", "nii.gz", "nrrd", "mha", "mhd", "png"]


def sample(ext):
    rng = np.random.default_rng(1)
    if ext == "png":
        return sitk.GetImageFromArray(rng.integers(0, 255, (30, 40)).astype(np.uint8))
    image = sitk.GetImageFromArray(rng.uniform(size=(12, 30, 40)).astype(np.float32))
    image.SetSpacing((1.0, 2.0, 3.0))
    return image


def write(image, path):
    sitk.WriteImage(image, str(path), path.name.endswith(".gz"))
    return path


@pytest.mark.parametrize("ext", FORMATS)
def test_whole_files_read_as_written(tmp_path, ext):
    image = sample(ext)
    read = read_image(write(image, tmp_path / f"a.{ext}"), "moving")
    assert np.array_equal(sitk.GetArrayFromImage(read), sitk.GetArrayFromImage(image).astype(np.float32))


@pytest.mark.parametrize("ext", FORMATS)
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_files_are_refused(tmp_path, ext, keep):
    path = write(sample(ext), tmp_path / f"a.{ext}")
    if ext == "mhd":
        path = path.with_suffix(".raw")  # the data file the header names
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InputImageError, match=r"^moving image .*a\.\w+(\.gz)? (is truncated|is unreadable|is corrupt)"):
        read_image(tmp_path / f"a.{ext}", "moving")


@pytest.mark.parametrize("ext", ["mha", "mhd", "nrrd"])
def test_truncated_compressed_files_are_refused(tmp_path, ext):
    path = tmp_path / f"a.{ext}"
    sitk.WriteImage(sample(ext), str(path), True)
    data_file = path.with_suffix(".zraw") if ext == "mhd" else path
    data = data_file.read_bytes()
    data_file.write_bytes(data[: int(len(data) * 0.7)])
    with pytest.raises(
        InputImageError,
        match=r"a\.\w+ (is truncated: its header promises compressed data|is unreadable: "
        r"\[nrrd\] _nrrdEncodingGzip_read: expected)",
    ):
        read_image(path, "moving")


def test_corrupt_gzip_stream_is_refused(tmp_path):
    path = write(sample("nii.gz"), tmp_path / "a.nii.gz")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InputImageError, match=r"a.nii.gz is (corrupt|truncated)"):
        read_image(path, "fixed")


def test_nifti_header_promising_more_than_the_file_holds(tmp_path):
    """A whole gzip stream whose NIfTI header claims more voxels than it carries."""
    path = write(sample("nii"), tmp_path / "a.nii")
    data = bytearray(path.read_bytes())
    data[42:44] = np.int16(1000).tobytes()  # dim[1] (x size): 40 -> 1000
    with gzip.open(tmp_path / "b.nii.gz", "wb") as handle:
        handle.write(bytes(data))
    with pytest.raises(InputImageError, match=r"b.nii.gz is truncated: its NIfTI header promises \d+ bytes"):
        read_image(tmp_path / "b.nii.gz", "fixed")


def test_metaimage_header_claiming_a_huge_volume(tmp_path):
    path = write(sample("mhd"), tmp_path / "a.mhd")
    path.write_text(path.read_text().replace("DimSize = 40 30 12", "DimSize = 1000 1000 1000"))
    with pytest.raises(
        InputImageError,
        match=r"a.mhd is truncated: its header promises 1000 1000 1000 voxels "
        r"\(4000000000 bytes\) but a.raw holds 57600 bytes",
    ):
        read_image(path, "moving")
    os.remove(tmp_path / "a.raw")
    with pytest.raises(InputImageError, match=r"a.mhd: its data file .*a.raw does not exist"):
        read_image(path, "moving")


@pytest.mark.parametrize("spacing", ["1e-30 1e-30 1e-30", "1 0 1", "1 nan 1"])
def test_unusable_spacing_is_refused(tmp_path, spacing):
    path = write(sample("mha"), tmp_path / "a.mha")
    data = path.read_bytes().replace(b"ElementSpacing = 1 2 3", f"ElementSpacing = {spacing}".encode())
    path.write_bytes(data)
    with pytest.raises(InputImageError, match=r"(a.mha has spacing .* mm; each must lie between|a.mha is unreadable)"):
        read_image(path, "moving")


def write_dicom_series(folder, slices=8, thickness=3.0):
    """A real DICOM series (one file per slice, positions along z) written by SimpleITK/GDCM."""
    folder.mkdir()
    volume = sitk.Cast(
        sitk.GetImageFromArray(np.random.default_rng(0).integers(0, 1000, (slices, 20, 24)).astype(np.int16)),
        sitk.sitkInt16,
    )
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(slices):
        image = volume[:, :, k]
        tags = {
            "0008|0060": "MR",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
            "0020|000e": "1.2.826.0.1.3680043.2.1125.2",
            "0020|0032": f"0\\0\\{k * thickness}",
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0020|0013": str(k + 1),
            "0028|0030": "1\\1",
            "0018|0050": str(thickness),
        }
        for tag, value in tags.items():
            image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(image)
    return folder


def test_dicom_series_whole_is_read(tmp_path):
    image = read_image(write_dicom_series(tmp_path / "dicom"), "fixed")
    assert image.GetSize() == (24, 20, 8) and image.GetSpacing()[2] == pytest.approx(3.0)


def test_dicom_series_with_a_missing_slice_is_refused(tmp_path):
    folder = write_dicom_series(tmp_path / "dicom")
    os.remove(folder / "slice004.dcm")
    with pytest.raises(
        InputImageError,
        match=r"fixed DICOM series in .*dicom has uneven slice positions: 6 mm between "
        r"slices 4 and 5 where the others are 3 mm apart",
    ):
        read_image(folder, "fixed")


def test_dicom_series_with_a_truncated_slice_is_refused(tmp_path):
    folder = write_dicom_series(tmp_path / "dicom")
    data = (folder / "slice007.dcm").read_bytes()
    (folder / "slice007.dcm").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputImageError, match=r"(slice007.dcm is a DICOM file outside the series|uneven|unreadable)"):
        read_image(folder, "moving")


def test_itk_warnings_are_collected_not_printed(tmp_path, capfd):
    """Reading an uneven series with ITK directly warns on stderr; the capture turns it into a sentence."""
    folder = write_dicom_series(tmp_path / "dicom")
    files = sorted(str(p) for p in folder.iterdir())
    del files[4]
    warnings = []
    with capture_itk_warnings(warnings):
        sitk.ReadImage(files)
    assert len(warnings) == 1 and "Non uniform sampling or missing slices detected" in warnings[0]
    assert "WARNING" not in capfd.readouterr().err


def test_reading_never_modifies_the_file(tmp_path):
    path = write(sample("nii.gz"), tmp_path / "a.nii.gz")
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    read_raw(path, "moving")
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime


def test_reading_in_threads_leaves_stderr_where_it_was(tmp_path):
    """Captures of descriptor 2 from several threads at once end with stderr restored, each read whole."""
    from concurrent.futures import ThreadPoolExecutor

    paths = [write(sample("nii.gz"), tmp_path / f"a{i}.nii.gz") for i in range(8)]
    before = os.fstat(2)
    with ThreadPoolExecutor(4) as pool:
        images = list(pool.map(lambda p: read_image(p, "moving", []), paths))
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
    assert all(image.GetSize() == (40, 30, 12) for image in images)


def test_dicom_series_named_out_of_order_is_read_in_position_order(tmp_path):
    folder = write_dicom_series(tmp_path / "dicom")
    files = sorted(folder.iterdir())
    for k, path in enumerate(files):
        path.rename(folder / f"tmp{k}")
    for k in range(len(files)):
        (folder / f"tmp{k}").rename(folder / f"img{len(files) - 1 - k:03d}.dcm")  # names against positions
    image = read_image(folder, "fixed")
    assert image.GetSize() == (24, 20, 8) and image.GetSpacing()[2] == pytest.approx(3.0)
