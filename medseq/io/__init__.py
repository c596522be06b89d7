"""Finding and loading image series: DICOM trees, NIfTI layouts and manifests."""
