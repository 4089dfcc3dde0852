"""Exceptions raised by DIRVNetLib. Every message names the file, argument or image at fault."""


class DIRVNetError(Exception):
    """Base class of all DIRVNetLib errors."""


class InputImageError(DIRVNetError, ValueError):
    """An input image is unusable (unreadable, wrong dimension, vector, empty, constant, NaN/Inf)."""


class WeightSetError(DIRVNetError, ValueError):
    """A weight set is missing, corrupt (checksum), or does not match the images."""


class InsufficientMemoryError(DIRVNetError, MemoryError):
    """The estimated memory of a registration exceeds what is available."""


class RegistrationCancelled(DIRVNetError):
    """The caller's cancel flag was set; nothing was written."""


class OutputFolderError(DIRVNetError, OSError):
    """An output folder cannot take the outputs (a file, not writable, holds other files or an input)."""


class RegistrationFailedError(DIRVNetError, ArithmeticError):
    """A registration produced a non-finite (NaN/Inf) field or similarity; nothing was written."""


class PointsError(DIRVNetError, ValueError):
    """A point file or point pairs are unusable (format, count, dimension, outside the image)."""
