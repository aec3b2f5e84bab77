"""The serving contract: what a model takes and answers, written as an export's
``metadata.json`` and read back by everything that serves it (the predictor, evaluation,
ensembles), for every source alike.

A model takes raw 2D slices (any height and width) of one volume cut across its
``slice_axis``, stacked with the 2.5D ``context_offsets`` (channel ``m * len(offsets) + k`` is
modality m at offset k), in the records' dtype (uint16 for the Kaggle layout and the phantom,
float32 otherwise); it normalises them with parameters of the whole volume (the
``normalization`` signature) and answers per-class probabilities at the input size (sigmoid
channels, or the class channels of a softmax over background and the classes).

Exports written before this contract (tf_medseg 0.1, without ``export_version``) are refused
with one line: train the run again with this version (README, "Upgrading").
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from tf_medseg.config import MAX_OFFSET
from tf_medseg.data.labels import HEADS, LabelSchema
from tf_medseg.errors import MedsegError

EXPORT_VERSION = 2
SIGNATURES = ("serving_default", "serving_scaled", "normalization", "logits")
IMAGE_DTYPES = ("uint16", "float32")
SAMPLINGS = ("resize", "patch")
TTA_MODES = ("none", "flips", "zoom", "flips+zoom")
POSTPROCESSING = "postprocessing.json"
# What every reader needs from metadata.json (a file without them is damaged).
REQUIRED = ("classes", "context_offsets", "model_input_size")
FIX = "export the model again (train.py over its run folder resumes and exports)"


@dataclasses.dataclass(frozen=True)
class Contract:
    """The input and output of a model (an export, or a model under evaluation)."""

    labels: LabelSchema  # normalisation resolved, with the data set's statistics
    head: str  # sigmoid | softmax
    context: tuple[int, ...]
    input_size: tuple[int, ...]  # the network's (height, width), or a 3D patch's (d, h, w)
    image_dtype: str  # uint16 | float32
    slice_axis: str | int = "auto"
    spacing: tuple[float, float] | None = None  # in-plane resampling before the network
    threshold: float = 0.5
    sampling: str = "resize"  # resize: slices resized to input_size; patch: sliding windows
    overlap: float = 0.5  # patch: the windows' overlap
    tta: str = "none"  # none | flips | zoom | flips+zoom (predict.tta)
    mirror_axes: tuple[int, ...] = ()  # the network's axes mirrored with flips
    orientation: str | None = None  # axis codes of the training volumes ("LAS"), if noted
    roi_names: tuple[str, ...] = ()  # per class, the name of its ROI in DICOM outputs

    @property
    def classes(self) -> tuple[str, ...]:
        return self.labels.classes

    @property
    def roi_labels(self) -> tuple[str, ...]:
        """Each class's name in RTSTRUCT and SEG outputs (``export.roi_names``, else its own)."""
        return self.roi_names or self.classes

    @property
    def dims(self) -> int:
        """2 for a network on slices, 3 for a 3D network (on 3D patches)."""
        return len(self.input_size)

    @property
    def modalities(self) -> int:
        return self.labels.num_channels

    @property
    def channels(self) -> int:
        """Input channels: modalities x context offsets."""
        return self.modalities * len(self.context)

    @property
    def centre(self) -> int:
        """The index of offset 0 in the context."""
        return self.context.index(0)

    def to_metadata(self) -> dict:
        """The contract as ``metadata.json`` states it."""
        softmax = self.head == "softmax"
        return {
            "format": "tf_saved_model", "export_version": EXPORT_VERSION,
            "signature": "serving_default", "signatures": list(SIGNATURES),
            "classes": list(self.classes), "labels": self.labels.to_dict(),
            "channels": list(self.labels.channels), "context_offsets": list(self.context),
            "input": {"name": "image", "dtype": self.image_dtype,
                      "shape": ["batch", "height", "width", self.channels],
                      **({"value_range": [0, 65535]} if self.image_dtype == "uint16" else {}),
                      "note": "raw slices of one volume cut across slice_axis (and "
                              "resampled to spacing, if set); channel m * "
                              "len(context_offsets) + k is modality m at offset k, clamped "
                              "at the volume's ends" + (
                                  "; a 3D model (model_dims 3): all the volume's slices in "
                                  "one call, in order" if self.dims == 3 else "")},
            "output": {"name": "probabilities", "dtype": "float32",
                       "shape": ["batch", "height", "width", len(self.classes)],
                       "activation": ("softmax over background and the classes (the "
                                      "background channel left out): a pixel is the class of "
                                      "the largest probability if it beats 1 - their sum"
                                      if softmax else
                                      "sigmoid, one independent channel per class")},
            "model_output": self.head,
            "normalization": {"methods": list(self.labels.normalization),
                              "stats": list(self.labels.stats)},
            "slice_axis": self.slice_axis,
            "spacing": list(self.spacing) if self.spacing else None,
            "label_values": list(self.labels.label_values),
            "model_input_size": list(self.input_size), "model_dims": self.dims,
            "threshold": self.threshold,
            "sampling": self.sampling, "overlap": self.overlap,
            "tta": self.tta, "mirror_axes": list(self.mirror_axes),
            "orientation": self.orientation, "roi_names": list(self.roi_labels),
        }

    @classmethod
    def from_metadata(cls, meta: dict, path: Path) -> "Contract":
        """The contract of a ``metadata.json`` (one-line MedsegError naming ``path`` if it is
        damaged or older than this contract)."""
        if not isinstance(meta, dict):
            raise MedsegError(f"{path}: damaged export metadata (not a JSON object); {FIX}")
        missing = [k for k in REQUIRED if k not in meta]
        if missing:
            raise MedsegError(f"{path}: damaged export metadata (no {missing[0]!r}); {FIX}")
        offsets = meta["context_offsets"]
        if (not isinstance(offsets, list) or not offsets or 0 not in offsets
                or not all(isinstance(o, int) and abs(o) <= MAX_OFFSET for o in offsets)):
            raise MedsegError(f"{path}: damaged export metadata (context_offsets "
                              f"{offsets!r}); {FIX}")
        t = meta.get("threshold", 0.5)
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < 1:
            raise MedsegError(f"{path}: damaged export metadata (threshold {t!r}); {FIX}")
        if meta.get("export_version") != EXPORT_VERSION:
            raise MedsegError(f"{path}: an export of an older tf_medseg (export_version "
                              f"{meta.get('export_version', 1)}, this one reads "
                              f"{EXPORT_VERSION}); train the run again with this version "
                              f"to export it (see the README, Upgrading)")
        try:
            labels = LabelSchema.from_dict(meta["labels"])
            contract = cls(labels=labels, head=meta["model_output"],
                           context=tuple(meta["context_offsets"]),
                           input_size=tuple(int(n) for n in meta["model_input_size"]),
                           image_dtype=meta["input"]["dtype"],
                           slice_axis=meta.get("slice_axis", "auto"),
                           spacing=tuple(meta["spacing"]) if meta.get("spacing") else None,
                           threshold=float(t),
                           sampling=meta.get("sampling", "resize"),
                           overlap=float(meta.get("overlap", 0.5)),
                           tta=meta.get("tta", "none"),
                           mirror_axes=tuple(int(a) for a in meta.get("mirror_axes", [])),
                           orientation=_codes(meta.get("orientation")),
                           roi_names=_roi_names(meta.get("roi_names"), labels.classes))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MedsegError(f"{path}: damaged export metadata ({type(exc).__name__}: "
                              f"{str(exc)[:60]}); {FIX}") from None
        if contract.dims not in (2, 3) or (contract.dims == 3 and contract.sampling != "patch"):
            raise MedsegError(f"{path}: damaged export metadata (model_input_size "
                              f"{list(contract.input_size)}, sampling {contract.sampling!r}); "
                              f"{FIX}")
        if contract.sampling not in SAMPLINGS or not 0 <= contract.overlap <= 0.9:
            raise MedsegError(f"{path}: damaged export metadata (sampling "
                              f"{contract.sampling!r}, overlap {contract.overlap!r}); {FIX}")
        if (contract.tta not in TTA_MODES or ("flips" in contract.tta) != bool(
                contract.mirror_axes) or any(not 0 <= a < contract.dims
                                             for a in contract.mirror_axes)):
            raise MedsegError(f"{path}: damaged export metadata (tta {contract.tta!r}, "
                              f"mirror_axes {list(contract.mirror_axes)}); {FIX}")
        if contract.roi_names and len(contract.roi_names) != len(contract.classes):
            raise MedsegError(f"{path}: damaged export metadata (roi_names "
                              f"{list(contract.roi_names)} for {len(contract.classes)} "
                              f"classes); {FIX}")
        if contract.head not in HEADS or contract.image_dtype not in IMAGE_DTYPES:
            raise MedsegError(f"{path}: damaged export metadata (model_output "
                              f"{contract.head!r}, input dtype {contract.image_dtype!r}); "
                              f"{FIX}")
        return contract


def roi_names(mapping: dict | str | None, classes) -> tuple[str, ...]:
    """Each class's ROI name under ``export.roi_names`` (classes it leaves out keep theirs;
    ``tg263``: each class's TG-263 standard name); () without a mapping. A name that is not a
    class, or a class TG-263 does not know, is a one-line ConfigError."""
    from tf_medseg.errors import ConfigError
    if not mapping:
        return ()
    if mapping == "tg263":
        from tf_medseg.dicom.tg263 import standard_name
        unknown = [c for c in classes if standard_name(c) is None]
        if unknown:
            raise ConfigError(f"export.roi_names: tg263 does not know class {unknown[0]!r} "
                              f"(by its name or a local name of a TG-263 structure); map it "
                              f"instead, e.g. {{{unknown[0]}: A_TG263_Name}}")
        return tuple(standard_name(c) for c in classes)
    unknown = [k for k in mapping if k not in classes]
    if unknown:
        raise ConfigError(f"export.roi_names: {unknown[0]!r} is not a class of the data "
                          f"({', '.join(classes)}); name the classes whose ROI names to set")
    return tuple(mapping.get(c, c) for c in classes)


def _roi_names(value, classes) -> tuple[str, ...]:
    """metadata.json's ``roi_names`` (a list of strings, one per class); () where they are the
    class names or absent (exports before ``export.roi_names``)."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(n, str) and n for n in value):
        raise ValueError(f"roi_names {value!r}")
    names = tuple(value)
    return () if names == tuple(classes) else names


def _codes(value) -> str | None:
    """Axis codes as metadata.json states them: three distinct of L/R, A/P, S/I, or None."""
    if value is None:
        return None
    value = str(value)
    if len(value) != 3 or sorted({"L": 0, "R": 0, "A": 1, "P": 1, "S": 2, "I": 2}.get(c, 9)
                                 for c in value) != [0, 1, 2]:
        raise ValueError(f"orientation {value!r}")
    return value


def read_metadata(model_dir: Path, label: str) -> dict:
    """``metadata.json`` of an export, after checking that ``model_dir`` is one (else a
    one-line MedsegError starting with ``label``, e.g. the command-line option)."""
    from tf_medseg.run_dir import read_json
    if not (model_dir / "saved_model.pb").is_file() or not (model_dir / "metadata.json"
                                                            ).is_file():
        raise MedsegError(f"{label}: not a tf_medseg SavedModel (expected saved_model.pb and "
                          f"metadata.json; train.py writes them to RUN_DIR/saved_model)")
    return read_json(model_dir / "metadata.json", "export metadata", FIX)


def read_contract(model_dir: Path, label: str) -> Contract:
    """The checked contract of an export (:func:`read_metadata`, :meth:`Contract.
    from_metadata`)."""
    return Contract.from_metadata(read_metadata(model_dir, label), model_dir / "metadata.json")


def resolve_models(values) -> tuple[list[Path], Path | None]:
    """The exports that ``--model`` names and the post-processing file that goes with them.

    Each value is an export (``RUN_DIR/saved_model``), a run folder holding one, or a
    cross-validation run folder (its folds' exports, and ``cv/postprocessing.json``). Only a
    single value brings post-processing: a CV folder's, or an ensemble export's own.
    """
    from tf_medseg.run_dir import cv_exports, is_cv_run
    values = [values] if isinstance(values, (str, os.PathLike)) else list(values)
    exports: list[Path] = []
    postprocessing = None
    for value in values:
        path = Path(value).expanduser()
        if (path / "saved_model.pb").is_file():
            exports.append(path)
            if (path / POSTPROCESSING).is_file():
                postprocessing = path / POSTPROCESSING
        elif is_cv_run(path):
            exports.extend(cv_exports(path))
            if (path / "cv" / POSTPROCESSING).is_file():
                postprocessing = path / "cv" / POSTPROCESSING
        elif (path / "saved_model" / "saved_model.pb").is_file():
            exports.append(path / "saved_model")
        else:
            exports.append(path)  # read_metadata names what is missing
    seen = set()
    for path in exports:
        key = os.path.realpath(path)
        if key in seen:
            raise MedsegError(f"--model {path}: named twice; give each export once")
        seen.add(key)
    return exports, (postprocessing if len(values) == 1 else None)


# What the members of one ensemble must share (metadata.json's keys): they take the same input
# and answer with the same classes.
SHARED = ("classes", "context_offsets", "channels", "model_output", "slice_axis", "spacing",
          "label_values", "threshold", "model_dims")


def check_members(contracts: list[Contract], dirs: list[Path]) -> None:
    """Members of one ensemble take the same input and answer with the same classes."""
    first = contracts[0].to_metadata()
    for contract, path in zip(contracts[1:], dirs[1:]):
        meta = contract.to_metadata()
        for key in SHARED:
            if meta[key] != first[key]:
                raise MedsegError(f"--model {path}: {key} {meta[key]!r}, but {dirs[0]} has "
                                  f"{first[key]!r}; an ensemble's members must agree")
        if meta["input"]["dtype"] != first["input"]["dtype"]:
            raise MedsegError(f"--model {path}: takes {meta['input']['dtype']} images, but "
                              f"{dirs[0]} takes {first['input']['dtype']}; an ensemble's "
                              f"members must agree")
