"""DICOM objects beside the images: lesion masks from SEG and RTSTRUCT, results as SR and SEG.

One job per module:

- :mod:`.grid`: the image grid an object is placed on, and LPS/voxel conversions.
- :mod:`.rasterize`: polygons to voxels by the even-odd rule (RTSTRUCT contours).
- :mod:`.labels`: the label mask record, ``--roi`` selection and overlap resolution.
- :mod:`.rtstruct` / :mod:`.seg`: read an RTSTRUCT or a DICOM SEG onto an image grid.
- :mod:`.attach`: attach SEG/RTSTRUCT objects of a DICOM export to the series they reference.
- :mod:`.uids` / :mod:`.identity`: deterministic UIDs; pseudonymised or kept identification.
- :mod:`.records`: what one timepoint's SR and SEG report; :mod:`.errors`: the refusal.
- :mod:`.seg_writer` / :mod:`.sr`: build a DICOM SEG and a TID 1500 Comprehensive 3D SR.
- :mod:`.tracking_input` / :mod:`.sources`: what ``medseq track`` wrote, and the source series.
- :mod:`.export`: ``medseq export-dicom``, per patient and timepoint.

highdicom is imported inside functions only, so the CLI stays fast. Documented in
``docs/dicom-objects.md``.
"""
