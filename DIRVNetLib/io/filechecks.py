"""Checks that an image file holds all the data its header promises, before ITK reads it (ITK fills what
is missing with zeros for a short gzip stream or raw NIfTI), that a DICOM series has no missing or
uneven slices, and capture of ITK's warnings (printed on stderr) so they can be reported."""

from __future__ import annotations

import contextlib
import gzip
import re
import struct
import sys
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from DIRVNetLib.errors import InputImageError
from DIRVNetLib.io.stderr import captured_stderr

_GZIP_MAGIC = b"\x1f\x8b"
_NIFTI_HEADER_BYTES = 540  # a NIfTI-2 header; a NIfTI-1 header is 348
_NIFTI_BITS = {
    2: 8,
    4: 16,
    8: 32,
    16: 32,
    32: 64,
    64: 64,
    128: 24,
    256: 8,
    512: 16,
    768: 32,
    1024: 64,
    1280: 64,
    1536: 128,
    1792: 128,
    2048: 256,
    2304: 32,
}
_META_BYTES = {
    "MET_UCHAR": 1,
    "MET_CHAR": 1,
    "MET_USHORT": 2,
    "MET_SHORT": 2,
    "MET_UINT": 4,
    "MET_INT": 4,
    "MET_ULONG": 8,
    "MET_LONG": 8,
    "MET_ULONG_LONG": 8,
    "MET_LONG_LONG": 8,
    "MET_FLOAT": 4,
    "MET_DOUBLE": 8,
}


def check_file_whole(path: Path, role: str) -> None:
    """Raise :class:`InputImageError` when ``path`` is a gzip file whose stream is cut short or corrupt,
    or a NIfTI or MetaImage file (or its raw data file) shorter than its header says."""
    path = Path(path)
    with open(path, "rb") as handle:
        start = handle.read(2)
    if start == _GZIP_MAGIC:
        head, length = _gunzip_head_and_length(path, role)
    else:
        with open(path, "rb") as handle:
            head = handle.read(_NIFTI_HEADER_BYTES)
        length = path.stat().st_size
    expected = _nifti_bytes(head)
    if expected is not None and length < expected:
        raise InputImageError(
            f"{role} image {path} is truncated: its NIfTI header promises {expected} bytes but the file holds {length}"
        )
    if path.suffix.lower() in (".mhd", ".mha"):
        _check_metaimage(path, role)


def _gunzip_head_and_length(path: Path, role: str) -> tuple[bytes, int]:
    """The first bytes and the length of the decompressed stream (read to its end, in blocks)."""
    length, head = 0, b""
    try:
        with gzip.open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                if len(head) < _NIFTI_HEADER_BYTES:
                    head += block[: _NIFTI_HEADER_BYTES - len(head)]
                length += len(block)
    except EOFError as e:
        raise InputImageError(f"{role} image {path} is truncated: its compressed stream ends early") from e
    except (OSError, zlib.error) as e:
        raise InputImageError(f"{role} image {path} is corrupt: {e}") from e
    return head, length


def _nifti_bytes(head: bytes) -> int | None:
    """Header size + voxel data bytes promised by a NIfTI-1/-2 header, or None if ``head`` is not one."""
    for endian in "<>":
        if len(head) >= 348 and struct.unpack(endian + "i", head[:4])[0] == 348 and head[344:347] in (b"n+1", b"ni1"):
            dims = struct.unpack(endian + "8h", head[40:56])
            datatype, bitpix = struct.unpack(endian + "2h", head[70:74])
            offset = int(struct.unpack(endian + "f", head[108:112])[0]) if head[344:347] == b"n+1" else None
        elif len(head) >= 540 and struct.unpack(endian + "i", head[:4])[0] == 540 and head[4:7] in (b"n+2", b"ni2"):
            dims = struct.unpack(endian + "8q", head[16:80])
            datatype, bitpix = struct.unpack(endian + "2h", head[12:16])
            offset = struct.unpack(endian + "q", head[168:176])[0] if head[4:7] == b"n+2" else None
        else:
            continue
        if offset is None or not 1 <= dims[0] <= 7:  # a .hdr/.img pair: the data lies in another file
            return None
        bits = _NIFTI_BITS.get(datatype, bitpix)
        return offset + int(np.prod([max(int(d), 1) for d in dims[1 : dims[0] + 1]], dtype=object)) * bits // 8
    return None


def _check_metaimage(path: Path, role: str) -> None:
    """A MetaImage header's data (in the .mha itself or in the file its ElementDataFile names) must hold
    DimSize x channels x element bytes, or CompressedDataSize bytes when compressed."""
    fields, header_bytes = {}, 0
    with open(path, "rb") as handle:
        for raw in handle:
            header_bytes += len(raw)
            key, _, value = raw.decode("latin-1").partition("=")
            fields[key.strip().lower()] = value.strip()
            if key.strip().lower() == "elementdatafile":
                break
    data_name = fields.get("elementdatafile")
    if not data_name or fields.get("headersize"):
        return
    if data_name.upper() == "LOCAL":
        data_file, available = path, path.stat().st_size - header_bytes
    elif data_name.upper().startswith("LIST") or "%" in data_name or " " in data_name:
        return
    else:
        data_file = path.parent / data_name
        if not data_file.is_file():
            raise InputImageError(f"{role} image {path}: its data file {data_file} does not exist")
        available = data_file.stat().st_size
    try:
        if fields.get("compresseddata", "false").lower() == "true":
            expected, what = int(fields["compresseddatasize"]), "compressed data"
        else:
            voxels = int(np.prod([int(v) for v in fields.get("dimsize", "").split()], dtype=object))
            channels = int(fields.get("elementnumberofchannels", "1"))
            expected = voxels * channels * _META_BYTES[fields.get("elementtype", "").upper()]
            what = f"{fields.get('dimsize')} voxels"
    except (ValueError, KeyError):
        return  # ITK reports a malformed header (or one without the compressed size) itself
    if available < expected:
        raise InputImageError(
            f"{role} image {path} is truncated: its header promises {what} ({expected} bytes) but "
            f"{data_file.name} holds {available} bytes"
        )


def check_dicom_series(folder: Path, files: Sequence[str], role: str) -> None:
    """Refuse a DICOM series with missing or unevenly spaced slices (distances between consecutive slice
    positions, in the order ITK reads them), or a folder holding DICOM files that could not be read into
    the series (truncated)."""
    folder = Path(folder)
    in_series = {Path(f).resolve() for f in files}
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and entry.resolve() not in in_series and _is_dicom(entry):
            raise InputImageError(
                f"{role} DICOM folder {folder}: {entry.name} is a DICOM file outside the series (truncated or "
                "unreadable?); remove it or repair the series"
            )
    if len(files) < 3:
        return
    positions = []
    reader = sitk.ImageFileReader()
    for name in files:
        reader.SetFileName(str(name))
        try:
            reader.ReadImageInformation()
            positions.append([float(v) for v in reader.GetMetaData("0020|0032").split("\\")])
        except (RuntimeError, ValueError):
            return  # no positions to compare (ITK reads such a series as it can)
    gaps = np.linalg.norm(np.diff(np.array(positions), axis=0), axis=1)  # in the series' (sorted) order
    typical = float(np.median(gaps))
    worst = int(np.argmax(np.abs(gaps - typical)))
    if typical <= 0 or abs(gaps[worst] - typical) > max(0.01, 0.05 * typical):
        raise InputImageError(
            f"{role} DICOM series in {folder} has uneven slice positions: {gaps[worst]:.3g} mm between slices "
            f"{worst + 1} and {worst + 2} where the others are {typical:.3g} mm apart (a missing or duplicate slice?)"
        )


def _is_dicom(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(128)
        return handle.read(4) == b"DICM"


_ITK_WARNING = re.compile(r"WARNING: In [^\n]*\n(?P<text>.*?)(?:\n\s*\n|\Z)", re.DOTALL)


@contextlib.contextmanager
def capture_itk_warnings(warnings: list[str]) -> Iterator[None]:
    """Collect ITK's warnings (written to the process's stderr) during the block into the list
    ``warnings`` (one line each); anything else written to stderr meanwhile is passed on."""
    try:
        with captured_stderr() as captured:
            yield
    finally:
        for match in _ITK_WARNING.finditer(captured.text):
            line = " ".join(match["text"].split())
            warnings.append(re.sub(r"^\w+ \(0x[0-9a-f]+\): ", "", line))
        rest = _ITK_WARNING.sub("", captured.text).strip()
        if rest:
            print(rest, file=sys.stderr)
