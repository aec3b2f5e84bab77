"""What a data set's ``dataset.json`` (nnU-Net, Decathlon) or ``labels.json`` declares: the
classes and their label values (regions too, painted in ``regions_class_order``), and the
channel names; every mistake is a one-line DataError naming the file and key."""

from __future__ import annotations

from pathlib import Path

from tf_medseg.data.labels import MAX_CLASSES, LabelSchema
from tf_medseg.errors import DataError


def int_label(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 65536:
        raise DataError(f"{where}: label values must be whole numbers from 0 to 65535, got "
                        f"{value!r}")
    return value


def classes_from_labels(labels: dict, path: Path, nnunet: bool,
                         regions_order=None) -> tuple[LabelSchema, frozenset[int]]:
    """(label schema without channels, declared values) of an nnU-Net ``labels`` mapping
    name -> value(s)."""
    if not isinstance(labels, dict) or not labels:
        raise DataError(f"{path}: 'labels' must be a mapping of class names to label values")
    names, values, declared = [], [], {0}
    region = False
    for name, value in labels.items():
        where = f"{path}: labels.{name}"
        if isinstance(value, list):
            if not nnunet or not value:
                raise DataError(f"{where}: a list of label values (a region) needs at least "
                                f"one value")
            vals = tuple(int_label(v, where) for v in value)
            region = True
        else:
            vals = (int_label(value, where),)
        if name == "ignore":
            raise DataError(f"{where}: nnU-Net's ignore label is not supported; relabel those "
                            f"voxels or leave them out")
        if vals == (0,):
            continue  # background
        if 0 in vals:
            raise DataError(f"{where}: value 0 is the background and cannot be part of a "
                            f"class")
        names.append(str(name))
        values.append(vals)
        declared.update(vals)
    if not names:
        raise DataError(f"{path}: 'labels' declares no class besides the background")
    if not region and len({v[0] for v in values}) != len(values):
        raise DataError(f"{path}: two classes in 'labels' share a label value")
    if len(names) > MAX_CLASSES:
        raise DataError(f"{path}: {len(names)} classes; tf_medseg supports up to {MAX_CLASSES}")
    if regions_order is not None and (not isinstance(regions_order, list) or not all(
            isinstance(x, int) and not isinstance(x, bool) and 0 < x < 65536
            for x in regions_order)):
        raise DataError(f"{path}: regions_class_order must be a list of label values (whole "
                        f"numbers from 1), got {regions_order!r}")
    paint = tuple(v[0] for v in values) if not region else tuple(
        int(x) for x in regions_order) if regions_order else tuple(range(1, len(names) + 1))
    if region and len(paint) != len(names):
        raise DataError(f"{path}: regions_class_order has {len(paint)} entries for "
                        f"{len(names)} regions")
    labels = LabelSchema(classes=tuple(names), exclusive=not region, channels=(),
                         metric="volume", encoding="labels", values=tuple(values), paint=paint)
    return labels, frozenset(declared)


def channel_names(mapping, path: Path, key: str) -> tuple[str, ...]:
    if not isinstance(mapping, dict) or not mapping:
        raise DataError(f"{path}: '{key}' must be a mapping of channel numbers to names, "
                        f"e.g. {{\"0\": \"T2\"}}")
    try:
        order = sorted(int(k) for k in mapping)
    except ValueError:
        raise DataError(f"{path}: the keys of '{key}' must be channel numbers 0, 1, ...") \
            from None
    if order != list(range(len(order))):
        raise DataError(f"{path}: '{key}' must number the channels 0 to {len(order) - 1} "
                        f"without gaps, got {sorted(mapping)}")
    return tuple(str(mapping[str(k)] if str(k) in mapping else mapping[k]) for k in order)
