"""Files: images (anything SimpleITK reads, DICOM series folders), transforms, weight sets."""
