"""The config's schema: frozen dataclasses mirrored one-to-one by YAML sections, every key
with its type, default, documentation and checks.

Loading and validating live in :mod:`tf_medseg.config` (and :mod:`tf_medseg.config.values`);
import the sections from there.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Literal, Optional, Union

import yaml

from tf_medseg.config.fields import (  # noqa: F401 (the schema's names, as before)
    MAX_CONFIG_BYTES,
    MAX_OFFSET,
    MAX_SEED,
    MAX_YAML_NODES,
    field,
    regex_ok,
)
from tf_medseg.config.losses import (  # noqa: F401 (the schema's names, as before)
    LOSS_NAMES,
    LOSS_SHORTHANDS,
    LOSS_TERMS,
    _check_loss,
    improves,
    loss_weights,
)
from tf_medseg.config.sections import EvalConfig, ExportConfig, PlanConfig, PredictConfig

# model.encoder: tf_medseg.models.encoders.BACKBONES has one entry for each but "none".
ENCODERS = ("none", "resnet50", "efficientnetv2b0", "efficientnetv2b1", "efficientnetv2b2",
            "efficientnetv2b3", "convnext_tiny")

NORMALIZATIONS = ("auto", "percentile", "zscore", "ct", "window")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The ``data:`` section: where slices come from and how they are batched."""

    source: Literal["phantom", "uwmgi", "nnunet", "decathlon", "folder", "dicom"] = field(
        "phantom", "phantom (built-in synthetic data), uwmgi (the Kaggle download in "
                   "data.root), nnunet (an nnU-Net v2 raw DatasetXXX_Name folder), decathlon "
                   "(a Medical Segmentation Decathlon task folder), folder (images/ and masks/ "
                   "of 2D PNGs with a labels.json) or dicom (image series + RTSTRUCT or SEG)")
    root: Optional[str] = field(
        None, "the data set's folder: the Kaggle folder holding train.csv and train/ "
              "(uwmgi), the folder holding dataset.json (nnunet, decathlon), the folder "
              "holding images/, masks/ and labels.json (folder), or of DICOM studies (dicom)")
    data_dir: str = field("~/tensorflow_datasets", "where TFDS writes the prepared TFRecords")
    image_size: Union[Literal["auto"], tuple[int, int], tuple[int, int, int]] = field(
        (128, 128), "[height, width] the model sees: slices resized to it (sampling: resize) "
                    "or patches of it cut from them (patch); model.dims 3: [slices, height, "
                    "width]; auto (resize): square, the median slice's longer side rounded up "
                    "to a multiple of 2^model.depth, at most 128 (docs/data.md)", min=1)
    plan: Literal["none", "auto"] = field(
        "none", "none (the config as written) or auto (before training, cross-validation, "
                "tuning, evaluation or a benchmark, the keys python -m tf_medseg plan would "
                "write are planned from the data set's fingerprint and replace the config's; "
                "plan: and model.base_filters steer them)")
    sampling: Literal["resize", "patch"] = field(
        "resize", "resize (every slice resized to data.image_size) or patch (slices kept at "
                  "their size, or data.spacing's, and random patches of data.image_size cut "
                  "from them, padded where a slice is smaller; predictions in overlapping "
                  "windows, predict.overlap, as nnU-Net)")
    foreground_share: float = field(
        1.0 / 3, "sampling: patch: share of patches centred on a labelled pixel (a class "
                 "drawn first, then a pixel of it), the rest drawn anywhere; nnU-Net's 1/3",
        min=0.0, max=1.0)
    context: tuple[int, ...] = field(
        (0,), "slice offsets stacked as channels: [0] is 2D, [-2, 0, 2] is 2.5D",
        check=lambda v: (0 in v and len(set(v)) == len(v) and all(abs(o) <= MAX_OFFSET for o in v),
                         f"must contain 0, no repeats, offsets within +-{MAX_OFFSET}"))
    batch_size: int = field(16, "global batch size (split across replicas)", min=1)
    fold: Union[int, Literal["all"]] = field(
        0, "validation fold, 0 <= fold < num_folds; or all: train on every case with no "
           "validation (nnU-Net's -f all), keeping the last epoch, for a final model tested "
           "on an external set (needs a fixed train.epochs: no plateau schedule, no early "
           "stopping)", min=0)
    num_folds: int = field(5, "number of case-grouped folds", min=2)
    shuffle_buffer: int = field(2048, "slices in the training shuffle buffer", min=1)
    cache: bool = field(True, "cache decoded, resized slices in memory after the first epoch")
    organ_fraction: Optional[float] = field(
        None, "share of training slices that show an organ (slices resampled each epoch), "
              "in (0, 1]; null keeps the data's own share", min=0.0, max=1.0,
        check=lambda v: (v > 0, "must be > 0 (null keeps the data's own share)"))
    class_fraction: Optional[float] = field(
        None, "2D: share of a scan's training slices drawn class first (a class the scan "
              "shows, then a slice of it: nnU-Net's); null: each once", min=0.0, max=1.0)
    augment: bool = field(True, "augment training batches as the augment: section says "
                                 "(affine, flips, elastic, contrast, brightness, gamma)")
    drop_case_days: tuple[str, ...] = field(
        ("case7_day0", "case81_day30"), "case-days left out (known faulty in the Kaggle data)")
    unmatched: Literal["error", "drop"] = field(
        "error", "a train.csv id without an image, or an image without rows: error (stop and "
                 "name it) or drop (leave out the id or case-day, and report it)")
    slice_axis: Union[Literal["auto"], int] = field(
        "auto", "the voxel axis (0, 1 or 2 of the stored volume: the file's order for NIfTI; "
                "slices, rows, columns for the Kaggle layout) that 2D slices are cut across; "
                "auto takes the axis with the coarsest spacing (the last on a tie), as "
                "nnU-Net's 2D configuration does (the Kaggle layout: its slices, 3 mm apart)",
        min=0, max=2)
    normalization: Union[Literal[NORMALIZATIONS], tuple[Literal[NORMALIZATIONS], ...]] = field(
        "auto", "intensity normalisation, one method or one per channel: percentile (divide "
                "each volume by its 99.5th percentile, clip to [0, 1.5]), zscore (each volume "
                "to mean 0, sd 1), ct (nnU-Net's CT scheme: clip to the 0.5 and 99.5 "
                "percentiles of the data set's foreground, z-score with its mean and sd), "
                "window (data.window) or auto (ct for a channel named CT, else percentile)")
    window: Optional[tuple[float, float]] = field(
        None, "the normalization: window channels' [low, high] in stored units, clipped to it "
              "and mapped to [-1, 1]; a CT soft-tissue window in HU: [-160, 240]",
        check=lambda v: (v[0] < v[1], "must be [low, high] with low < high"))
    spacing: Optional[Union[tuple[float, float], tuple[float, float, float]]] = field(
        None, "resample slices in-plane to this [row, column] pixel size in mm (images "
              "bicubic, masks nearest; before resizing to data.image_size), or with three "
              "values [between slices, row, column] the slice direction too (linear, or "
              "nearest where the stored slices are over 3x coarser than their pixels, as "
              "nnU-Net); null keeps the data's own grid. The records keep the stored grid, so "
              "changing it needs no rebuild", min=0.01, max=100.0)
    group_pattern: Optional[str] = field(
        None, "nnunet, decathlon, folder: a regular expression on the case (file) name whose "
              "first group (or whole match) names the patient (one patient's cases share a "
              "fold), e.g. '^(patient\\d+)_'; null: each case its own patient", check=regex_ok)
    roi_map: Optional[dict] = field(None, "dicom: each class's ROI names (TG-263 variants "
                                    "match), e.g. {stomach: [Stomach, STOMACH_1], liver: Liver}")
    modality: Optional[Literal["CT", "MR"]] = field(None, "dicom: the modality trained on where "
                                                    "an archive holds several")
    phantom_cases: int = field(8, "phantom: number of cases (patients)", min=2, max=10_000)
    phantom_days: int = field(2, "phantom: scan days per case", min=1)
    phantom_slices: int = field(80, "phantom: slices per scan", min=8)
    phantom_seed: int = field(0, "phantom: random seed (the data set is deterministic for it)",
                               min=0, max=MAX_SEED)


def _range(lo: float, hi: float):
    return lambda v: (len(v) == 2 and lo <= v[0] <= v[1] <= hi,
                      f"must be [low, high] with {lo} <= low <= high <= {hi}")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """The ``augment:`` section: the random transforms of training batches (``data.augment``
    turns them on). Image and mask go through the same geometric transform."""

    flip_lr: float = field(0.0, "probability of a left-right flip (off: the organs are "
                                 "lateralised, the stomach is on the patient's left)",
                            min=0.0, max=1.0)
    flip_ud: float = field(0.0, "probability of an up-down (anterior-posterior) flip",
                            min=0.0, max=1.0)
    rotate_deg: float = field(10.0, "largest in-plane rotation, degrees either way",
                               min=0.0, max=180.0)
    scale: tuple[float, float] = field((0.9, 1.1), "[low, high] isotropic zoom factor",
                                        check=_range(0.1, 10.0))
    shift: float = field(0.06, "largest shift, as a fraction of the image size", min=0.0,
                          max=0.5)
    elastic: float = field(0.0, "probability of an elastic deformation (0 turns it off)",
                            min=0.0, max=1.0)
    elastic_strength: float = field(
        0.03, "elastic: largest displacement, as a fraction of the image size", min=0.0, max=0.5)
    elastic_grid: int = field(5, "elastic: random control points per side (fewer = smoother)",
                               min=2, max=64)
    contrast: tuple[float, float] = field((0.85, 1.15), "[low, high] intensity factor",
                                           check=_range(0.0, 10.0))
    brightness: float = field(0.1, "largest intensity offset either way (normalised units)",
                               min=0.0, max=1.0)
    gamma: tuple[float, float] = field((0.8, 1.25), "[low, high] gamma exponent",
                                        check=_range(0.05, 20.0))
    noise: float = field(0.0, "probability of additive Gaussian noise (nnU-Net: 0.1)", min=0.0,
                         max=1.0)
    noise_sd: float = field(0.1, "noise: largest standard deviation (normalised units), "
                                 "drawn uniformly from 0", min=0.0, max=10.0)
    blur: float = field(0.0, "probability of an in-plane Gaussian blur (nnU-Net: 0.2)",
                        min=0.0, max=1.0)
    blur_sigma: tuple[float, float] = field((0.5, 1.0), "blur: [low, high] sigma in pixels",
                                            check=_range(0.0, 3.0))
    lowres: float = field(0.0, "probability of a simulated low resolution (nnU-Net: 0.125)",
                          min=0.0, max=1.0)
    lowres_zoom: tuple[float, float] = field(
        (0.5, 1.0), "low resolution: [low, high] zoom down to, then back up",
        check=_range(0.1, 1.0))


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The ``model:`` section: which network and its size."""

    name: Literal["unet", "attention_unet"] = field("unet", "unet or attention_unet")
    dims: Literal[2, 3] = field(
        2, "2 (a 2D network on slices, 2.5D with data.context) or 3 (Conv3D on 3D patches of "
           "data.image_size [slices, height, width]; needs data.sampling: patch and "
           "data.context [0])")
    strides: Optional[tuple[tuple[int, ...], ...]] = field(
        None, "per pooling step, its factor (1 or 2) along each axis, e.g. [[1, 2, 2], [2, 2, "
              "2]] (model.depth entries, model.dims values each); null: 2 along every axis "
              "(python -m tf_medseg plan sets it for anisotropic 3D data)",
        check=lambda v: (all(s in (1, 2) for level in v for s in level),
                         "every factor must be 1 or 2"))
    kernels: Optional[tuple[tuple[int, ...], ...]] = field(
        None, "per level and the bottleneck (model.depth + 1 entries), the convolution kernel "
              "along each axis (1, 3, 5 or 7; 1 along an axis too coarse to convolve); null: "
              "3 along every axis",
        check=lambda v: (all(k in (1, 3, 5, 7) for level in v for k in level),
                         "every kernel size must be 1, 3, 5 or 7"))
    base_filters: int = field(32, "filters of the first level; doubled at every level", min=1)
    depth: int = field(4, "number of down-sampling steps", min=1, max=8)
    batch_norm: bool = field(True, "false: no normalisation (model.norm none; kept for older "
                                   "configs)")
    norm: Literal["batch", "instance", "group", "none"] = field(
        "batch", "the normalisation after every convolution: batch, instance (per image and "
                 "channel, with a learned scale and shift: nnU-Net's), group (8 channel groups) "
                 "or none")
    activation: Literal["relu", "leaky_relu"] = field(
        "relu", "after every normalisation: relu or leaky_relu (slope 0.01, nnU-Net's)")
    dropout: float = field(0.0, "dropout rate in the bottleneck", min=0.0, max=0.99)
    upsampling: Literal["transpose", "bilinear"] = field(
        "transpose", "transpose (transposed conv, stride 2) or bilinear (bilinear resize + "
                     "conv + batch norm + ReLU)")
    up_kernel: Optional[int] = field(
        None, "kernel size of the up-convolution; null takes the architecture's default "
              "(3 for unet, 2 for attention_unet)", min=1, max=7)
    output: Literal["auto", "sigmoid", "softmax"] = field(
        "auto", "the last activation: softmax (over background and the classes: exclusive "
                "classes only), sigmoid (one independent channel per class) or auto (softmax "
                "when the data's classes are exclusive, sigmoid when they overlap)")
    deep_supervision: bool = field(
        False, "also train auxiliary heads on every coarser decoder level but the lowest, each "
               "scored against the mask at its resolution (loss weights 1/2, 1/4, ... of the "
               "main head's, normalised: nnU-Net's; model.depth >= 3); evaluation and export "
               "use the main head")
    encoder: Literal[ENCODERS] = field(
        "none", "none (the U-Net's own encoder) or a keras.applications backbone under the "
                "decoder: resnet50, efficientnetv2b0 to efficientnetv2b3, convnext_tiny (its "
                "stage outputs are the skips, plus a full-resolution skip; model.depth, at "
                "most 5, is where it is cut; ImageNet input normalisation inside the model)")
    encoder_weights: Optional[str] = field(
        None, "with model.encoder: null (random initialisation), imagenet (as "
              "keras.applications gets them: downloaded once into $KERAS_HOME/models/, "
              "checked against Keras's published hash, read from there offline) or the path "
              "of a weights file of the backbone (include_top=False); "
              "for other than 3 input channels the first kernel is adapted (RGB mean, "
              "repeated, times 3 / channels)")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The ``train:`` section: optimisation, hardware and the run directory."""

    epochs: int = field(20, "training epochs", min=1)
    steps_per_epoch: Optional[int] = field(None, "optional cap on steps per epoch", min=1,
                                            max=1_000_000)
    val_steps: Optional[int] = field(None, "optional cap on an epoch's validation batches (every "
                                           "k-th, over all validation cases)", min=1,
                                     max=1_000_000)
    learning_rate: float = field(1e-3, "peak learning rate (reached after the warm-up)",
                                  min=0.0)
    optimizer: Literal["adamw", "adam", "sgd"] = field(
        "adamw", "adamw (decoupled weight decay, not applied to biases and normalisation "
                 "parameters), adam, or sgd (Nesterov momentum train.momentum: nnU-Net's)")
    weight_decay: float = field(1e-4, "adamw and sgd: weight decay (nnU-Net: 3e-5)", min=0.0)
    momentum: float = field(0.99, "sgd: Nesterov momentum", min=0.0, max=0.999)
    schedule: Literal["cosine", "poly", "linear", "step", "plateau", "constant"] = field(
        "cosine", "after the warm-up: cosine (to train.min_lr_fraction), poly (nnU-Net's), "
                  "linear, step, plateau or constant (docs/configuration.md)")
    warmup_epochs: float = field(1.0, "linear warm-up from 0 to the peak, in epochs (0 for "
                                       "none)", min=0.0, max=100_000.0)
    min_lr_fraction: float = field(0.05, "cosine: final learning rate as a fraction of the "
                                          "peak", min=0.0, max=1.0)
    step_epochs: int = field(10, "step: epochs between drops", min=1)
    step_factor: float = field(0.5, "step: factor of each drop", min=0.0, max=1.0)
    plateau_patience: int = field(3, "plateau: epochs without improvement before a drop",
                                   min=1)
    plateau_factor: float = field(0.5, "plateau: factor of each drop", min=0.0, max=1.0)
    clipnorm: Optional[float] = field(
        None, "optional gradient clipping: largest global L2 norm of the gradients", min=0.0)
    monitor: Literal["val_score", "val_dice", "val_loss"] = field(
        "val_score", "what picks the kept (best) checkpoint, early stopping and plateau: "
                     "val_score (the competition score on whole validation scans, computed "
                     "after every epoch), val_dice (pooled pixel Dice) or val_loss")
    keep: Literal["best", "last"] = field(
        "best", "the model scored, written to metrics.json and exported: best (the epoch "
                "train.monitor liked best) or last (the final epoch; for cross-validation "
                "figures that are not chosen on the validation fold itself)")
    freeze_encoder_epochs: int = field(
        0, "with model.encoder: train the decoder only (the backbone frozen, its batch norm "
           "in inference mode) for this many first epochs, then everything", min=0)
    early_stopping: Optional[int] = field(
        None, "optional: stop after this many epochs without train.monitor improving", min=1)
    deterministic: bool = field(
        False, "deterministic ops (tf.config.experimental.enable_op_determinism): "
               "repeatable runs, slower")
    overlay_slices: int = field(
        4, "validation slices shown with predicted and true contours in TensorBoard's Images "
           "tab after every epoch (0 for none)", min=0, max=16)
    loss: Union[Literal[LOSS_NAMES], dict] = field(
        "bce_dice", "a loss name (bce, dice, tversky, focal_tversky, lovasz; bce_dice is BCE + "
                    "Dice), or a mapping of names to weights, e.g. {bce: 0.5, tversky: 0.5}",
        check=_check_loss)
    overlap_absent: Literal["auto", "skip", "count"] = field(
        "auto", "overlap losses of a class absent from a batch: skip (left out of the mean, as "
                "nnU-Net), count (1 / (1 + FP)) or auto (count for the competition metric)")
    tversky_fn_weight: float = field(
        0.7, "Tversky losses: weight of false negatives (alpha in Abraham & Khan 2019)", min=0.0)
    tversky_fp_weight: float = field(0.3, "Tversky losses: weight of false positives (beta)",
                                     min=0.0)
    focal_tversky_gamma: float = field(
        4 / 3, "focal_tversky: the loss is (1 - Tversky index) ** (1 / gamma)", min=0.1,
        max=10.0)
    precision: Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"] = field(
        "auto", "auto picks mixed_float16 on recent GPUs, mixed_bfloat16 on AMX/AVX512-BF16 CPUs")
    jit_compile: Literal["auto", True, False] = field(
        "auto", "XLA: auto (on for GPU; off on CPU, where it was measured slower), true or "
                "false")
    strategy: Literal["auto", "default", "mirrored", "multi_worker"] = field(
        "auto", "auto (MirroredStrategy over all GPUs when there are several, else default), "
                "default, mirrored (all local GPUs, or CPUs), multi_worker "
                "(MultiWorkerMirroredStrategy from the TF_CONFIG environment variable)")
    run_dir: str = field("runs/unet", "where checkpoints, logs, metrics and the export go")
    seed: int = field(42, "random seed for weights, shuffling and augmentation", min=0,
                       max=MAX_SEED - 1000)
    threshold: float = field(0.5, "probability above which a pixel is the organ (sigmoid "
                                   "outputs; a softmax model takes the most probable class)",
                              check=lambda v: (0 < v < 1, "must be between 0 and 1, both "
                                                          "excluded"))
    max_minutes: Optional[float] = field(
        None, "optional time budget for training in minutes (of each trial under --tune), "
              "> 0: the epochs that fit are fixed after the first, the schedule laid over "
              "them (budget.json)",
        check=lambda v: (v > 0, "must be > 0 (null for no budget)"))


@dataclasses.dataclass(frozen=True)
class TuneConfig:
    """The ``tune:`` section: the KerasTuner search of ``train.py --tune`` (see
    :mod:`tf_medseg.config.search_space` for the entries of ``tune.space``)."""

    tuner: Literal["random", "bayesian", "hyperband"] = field(
        "random", "random (RandomSearch), bayesian (BayesianOptimization, a Gaussian process) "
                  "or hyperband (Hyperband: many short trials, the best trained longer)")
    objective: Literal["val_score", "val_dice", "val_loss"] = field(
        "val_score", "what ranks the trials, at each trial's best epoch: val_score (the "
                     "competition score on whole validation scans), val_dice (pooled pixel "
                     "Dice) or val_loss")
    direction: Literal["auto", "max", "min"] = field(
        "auto", "which way tune.objective improves: auto (max for val_score and val_dice, "
                "min for val_loss), max or min")
    max_trials: int = field(10, "trials to run (random, bayesian); an interrupted search "
                                 "counts the trials it finished", min=1)
    executions_per_trial: int = field(
        1, "trainings per trial, with seeds train.seed, train.seed + 1, ... (the objective is "
           "their mean): more tells noise from gain", min=1)
    epochs: Optional[int] = field(None, "epochs per trial (hyperband: the most any trial gets); "
                                        "null takes train.epochs", min=1)
    initial_points: Optional[int] = field(
        None, "bayesian: random trials before the Gaussian process picks the next; null "
              "takes KerasTuner's 3 per searched key", min=1)
    hyperband_factor: int = field(3, "hyperband: reduction factor between rounds", min=2)
    seed: Optional[int] = field(None, "seed of the tuner's sampling; null: train.seed", min=0,
                                 max=MAX_SEED)
    space: dict = dataclasses.field(
        default_factory=dict,
        metadata={"doc": "search space: config key -> {type: choice, values: [...]}, "
                         "{type: int|float, min: .., max: .. [, step: ..] [, sampling: log]}, "
                         "{type: fixed, value: ..} or a plain list (a choice); "
                         "train.loss.NAME sets the weight of one loss term"})


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole experiment; one attribute per YAML section."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    tune: TuneConfig = dataclasses.field(default_factory=TuneConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)
    predict: PredictConfig = dataclasses.field(default_factory=PredictConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    plan: PlanConfig = dataclasses.field(default_factory=PlanConfig)

    def to_dict(self) -> dict:
        """Plain, YAML-serialisable dict (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    def digest(self) -> str:
        """A short, stable digest of the resolved config."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
