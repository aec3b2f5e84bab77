"""The DICOM concern in one place, read bottom to top:

- :mod:`~tf_medseg.dicom.reader`: image series found by UID in any folder, checked and read as
  (slices, rows, columns) volumes with their geometry (single- and multi-frame MR and CT);
- :mod:`~tf_medseg.dicom.contours`: polygons from masks and masks from polygons;
- :mod:`~tf_medseg.dicom.rtstruct`, :mod:`~tf_medseg.dicom.seg`: RT Structure Sets and DICOM
  SEG, written and read;
- :mod:`~tf_medseg.dicom.tg263`: AAPM TG-263 structure names;
- :mod:`~tf_medseg.dicom.studies`: a clinic's archive as a training source (``data.source:
  dicom``);
- :mod:`~tf_medseg.dicom.writer`: ``predict``'s writer of structure sets for DICOM input;
- the node (``serve-dicom``): :mod:`~tf_medseg.dicom.settings` (what a site sets),
  :mod:`~tf_medseg.dicom.intake` (what it lets in), :mod:`~tf_medseg.dicom.versions` (a series
  as a unit of work), :mod:`~tf_medseg.dicom.sender` (sending by the standard's statuses) and
  :mod:`~tf_medseg.dicom.node`, the service loop on top.

The rule for names that come from data (UIDs, patient IDs) is :mod:`tf_medseg.files`'
(``uid_problem``, ``plain_name``), shared with every other writer.
"""
