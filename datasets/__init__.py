"""TFDS dataset builders: ``uw_madison_gi`` (the Kaggle download), ``gi_phantom`` (generated),
``nnunet`` (nnU-Net v2 raw), ``decathlon`` (Medical Segmentation Decathlon), ``dicom`` (DICOM
studies with structure sets) and ``folder``
(2D image/mask pairs, builder ``segmentation_folder``)."""
