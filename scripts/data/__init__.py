"""
Data in and out: readers (NIfTI, NRRD, MetaImage, checked DICOM series), datalists, case names, input checks,
atomic writers and DICOM SEG. Imports nothing of the bundle's other packages.
"""
