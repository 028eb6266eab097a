"""Typed, frozen configuration: one model per params.yaml section.

params.yaml is read once (``load_params``) and passed down as these objects.
Unknown or misspelt keys and wrong types raise ``ConfigError`` naming the key
and, where possible, the closest valid key.
Every section is a ``medvit.section.Section``, whose attribute access records
the keys a stage reads when ``MEDVIT_RECORD_PARAMS`` is set.
"""

from __future__ import annotations

import difflib
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from medvit.section import DOMAINS, RECORD_ENV, Section, record_reads, tag_paths, unrecorded  # noqa: F401 - re-exported

Domain = Literal["medical", "satellite"]


class ConfigError(ValueError):
    """A user error in params.yaml (or a --params file)."""


# --------------------------------------------------------------------------- sample
class SampleMedical(Section):
    n_patients: int = Field(72, ge=1)
    images_per_patient: int = Field(3, ge=1)
    image_size: int = Field(256, ge=32)
    monochrome1_fraction: float = Field(0.25, ge=0, le=1)
    findings: tuple[str, ...] = ("cardiomegaly", "effusion", "nodule", "pneumothorax")
    prevalence: float = Field(0.33, gt=0, lt=1)  # per finding and image; (1 - p)^4 ~ 20 % normals
    burned_in: int = Field(2, ge=0)               # images with BurnedInAnnotation YES (ingest rejects them)


class SampleSatellite(Section):
    n_scenes: int = Field(10, ge=1)
    scene_size: int = Field(512, ge=64)
    band_names: tuple[str, ...] = ("B2", "B3", "B4", "B8")
    classes: tuple[str, ...] = ("water", "forest", "cropland", "urban", "bare")
    tile_size: int = Field(64, ge=8)                      # tiles.csv grid; keep equal to ingest.satellite
    stride: int = Field(64, ge=1)
    min_label_fraction: float = Field(0.05, ge=0, le=1)
    max_nodata_fraction: float = Field(0.5, ge=0, le=1)


class SampleConfig(Section):
    seed: int = 0
    medical: SampleMedical = SampleMedical()
    satellite: SampleSatellite = SampleSatellite()


# --------------------------------------------------------------------------- ingest
class SplitFractions(Section):
    train: float = Field(0.6, gt=0)
    val: float = Field(0.2, ge=0)
    test: float = Field(0.2, gt=0)

    @model_validator(mode="after")
    def _sum_to_one(self) -> "SplitFractions":
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split fractions must sum to 1, got {total:g}")
        return self


class IngestMedical(Section):
    image_size: int = Field(224, ge=16)
    label_names: tuple[str, ...] = ()
    voi: Literal["header", "window", "percentile"] = "header"
    window: tuple[float, float] | None = None
    percentiles: tuple[float, float] = (0.5, 99.5)
    multiframe: Literal["first", "all"] = "first"
    allow_burned_in: bool = False
    # Labels CSV layout; null: detected from the CSV header (medvit.ingest.registry).
    label_format: Literal["nih", "chexpert", "mimic"] | None = None
    metadata: str | None = None  # mimic: metadata CSV, relative to the raw folder (null: the published name)
    uncertain: Literal["ones", "zeros", "ignore"] = "ignore"  # chexpert/mimic -1.0; ignore = unknown (masked)
    blank: Literal["zeros", "ignore"] = "zeros"               # chexpert/mimic blank cell ("not mentioned")
    views: tuple[str, ...] = ()  # keep only these view positions (PA, AP, LL, LATERAL, ...); empty: all

    @model_validator(mode="after")
    def _window_given(self) -> "IngestMedical":
        if self.voi == "window" and self.window is None:
            raise ValueError("voi: window needs window: [center, width]")
        if any(v != v.strip().upper() or not v for v in self.views):
            raise ValueError("views are upper-case view positions as DICOM ViewPosition writes them (PA, AP, LL, ...)")
        return self


class IngestSatellite(Section):
    # scenes: multi-band GeoTIFF scenes; bigearthnet-v1/-v2: one GeoTIFF per band and patch; eurosat: 13-band tiles.
    format: Literal["scenes", "bigearthnet-v1", "bigearthnet-v2", "eurosat"] = "scenes"
    # 1-based indexes into the file (scenes) or the format's band order, or band names (B02, B8A, ...).
    bands: tuple[int | str, ...] = (1, 2, 3, 4)
    band_names: tuple[str, ...] = ("B2", "B3", "B4", "B8")  # channel names of indexed scene bands
    use_official_split: bool = False                     # BigEarthNet: the data set's train/validation/test
    nomenclature: Literal["bigearthnet-19"] | None = None  # BigEarthNet v1: 43 CORINE classes -> 19
    label_source: Literal["raster", "csv", "vector"] = "raster"
    vector_class_field: str = "class"  # label_source vector: the polygon attribute naming the class
    label_names: tuple[str, ...] = ("water", "forest", "cropland", "urban", "bare")
    tile_size: int = Field(64, ge=8)
    stride: int = Field(64, ge=1)
    min_label_fraction: float = Field(0.05, ge=0, le=1)
    max_nodata_fraction: float = Field(0.5, ge=0, le=1)
    scale: float | None = Field(None, gt=0)  # DN -> reflectance; null: 1/255 uint8, 1/10000 (u)int16, 1 float
    # Split groups: null = whole scenes; N = spatial blocks of N x N pixels within a scene (for few scenes).
    group_block: int | None = Field(None, ge=8)

    @model_validator(mode="after")
    def _bands_named(self) -> "IngestSatellite":
        if not self.bands:
            raise ValueError("bands must name at least one band")
        if any(isinstance(b, int) and b < 1 for b in self.bands):
            raise ValueError("band indexes are 1-based")
        if len(set(self.bands)) != len(self.bands):
            raise ValueError("bands must not repeat a band")
        named = [isinstance(b, str) for b in self.bands]
        if any(named) and not all(named):
            raise ValueError("bands are either all 1-based indexes or all band names, not a mix")
        # Indexed scene bands need channel names; named bands and the data set formats name their own.
        if self.format == "scenes" and not any(named) and len(self.bands) != len(self.band_names):
            raise ValueError("bands and band_names must have the same length")
        if not self.format.startswith("bigearthnet") and (self.use_official_split or self.nomenclature):
            raise ValueError("use_official_split and nomenclature apply to the bigearthnet-v1/-v2 formats only")
        return self

    @property
    def channel_names(self) -> tuple[str, ...]:
        """The scenes' cache channel names: the selected band names, or ``band_names`` for indexed bands."""
        return tuple(b.strip() for b in self.bands if isinstance(b, str)) or self.band_names


class IngestConfig(Section):
    seed: int = 0
    workers: int = Field(0, ge=0)
    shard_size: int = Field(256, ge=1)
    split_fractions: SplitFractions = SplitFractions()
    max_reject_fraction: float = Field(0.5, ge=0, le=1)
    medical: IngestMedical = IngestMedical()
    satellite: IngestSatellite = IngestSatellite()


# --------------------------------------------------------------------------- finetune
class HeadConfig(Section):
    hidden_dim: int = Field(256, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)


class LossConfig(Section):
    kind: Literal["bce", "asymmetric"] = "bce"
    pos_weight: bool = True
    gamma_neg: float = 4.0
    gamma_pos: float = 0.0


class AugmentMedical(Section):
    affine_degrees: float = 5.0
    affine_scale: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.1
    hflip: bool = False


class AugmentSatellite(Section):
    flips: bool = True
    rot90: bool = True
    noise_std: float = 0.02


class AugmentConfig(Section):
    medical: AugmentMedical = AugmentMedical()
    satellite: AugmentSatellite = AugmentSatellite()


class FinetuneDomain(Section):
    """Per-domain overrides of the training schedule (``finetune.domains.<domain>``); unset keys inherit."""

    epochs: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0)
    warmup_epochs: float | None = Field(None, ge=0)
    early_stopping_patience: int | None = Field(None, ge=1)
    freeze_blocks: int | None = Field(None, ge=0)
    cache_frozen_features: bool | None = None
    frozen_feature_views: int | None = Field(None, ge=0)


class FinetuneConfig(Section):
    seed: int = 0
    model: str = "deit3_base_patch16_384"
    # Extra timm create_model kwargs (e.g. {depth: 2, embed_dim: 64, num_heads: 2} for tiny test models).
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    weights: str = "timm/deit3_base_patch16_384.fb_in22k_ft_in1k"
    allow_random_init: bool = False
    img_size: int | None = None
    freeze_blocks: int = Field(6, ge=0)
    normalize: Literal["dataset", "pretrained"] = "dataset"
    head: HeadConfig = HeadConfig()
    loss: LossConfig = LossConfig()
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    accum_steps: int = Field(1, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    layer_decay: float = Field(0.75, gt=0, le=1)
    warmup_epochs: float = Field(1.0, ge=0)
    clip_grad: float | None = 1.0
    ema_decay: float = Field(0.0, ge=0, lt=1)
    early_stopping_patience: int = Field(3, ge=1)
    mixup_alpha: float = Field(0.0, ge=0)
    cutmix_alpha: float = Field(0.0, ge=0)
    num_workers: int = Field(0, ge=0)
    deterministic: bool = True
    cache_frozen_features: bool = False
    # With cache_frozen_features: 0 = features of un-augmented images; N = a fixed bank of N augmented
    # views per image (epoch e trains on view e mod N).
    frozen_feature_views: int = Field(0, ge=0)
    augment: AugmentConfig = AugmentConfig()
    # Per-domain schedule overrides, e.g. {satellite: {epochs: 12}}: data sets differ in size.
    domains: dict[Domain, FinetuneDomain] = Field(default_factory=dict)

    def for_domain(self, domain: str) -> FinetuneConfig:
        """The effective config of ``domain``: its overrides applied, ``domains`` emptied."""
        override = self.domains.get(domain)  # type: ignore[call-overload]
        update = override.model_dump(exclude_none=True) if override is not None else {}
        return self.model_copy(update={**update, "domains": {}})


# --------------------------------------------------------------------------- zeroshot
class LinearProbeConfig(Section):
    enabled: bool = True
    k_shot: int | None = Field(None, ge=1)  # per label: k positives + k negatives from train
    C: float = Field(1.0, gt=0)
    max_iter: int = Field(1000, ge=1)


class ZeroshotDomain(Section):
    """CLIP model and channel mapping of one domain.

    ``model``: transformers -> hub id or local dir (CLIPModel + CLIPProcessor files);
    open_clip -> ``hf-hub:org/repo``, ``local-dir:/path`` (open_clip_config.json + weights),
    or a built-in architecture (``ViT-B-32``) whose checkpoint is ``weights``: a pretrained
    tag, a local file, or ``hf-hub:org/repo/file.pt`` (e.g. RemoteCLIP).
    """

    backend: Literal["transformers", "open_clip"] = "transformers"
    model: str = "openai/clip-vit-base-patch16"
    weights: str | None = None
    rgb: Literal["replicate", "bands"] = "bands"
    rgb_bands: tuple[str, ...] = ()
    rgb_percentiles: tuple[float, float] = (2.0, 98.0)

    @model_validator(mode="after")
    def _bands_given(self) -> "ZeroshotDomain":
        if self.rgb == "bands" and len(self.rgb_bands) != 3:
            raise ValueError("rgb: bands needs rgb_bands: [R, G, B] (three channel names from stats.json)")
        lo, hi = self.rgb_percentiles
        if not 0 <= lo < hi <= 100:
            raise ValueError("rgb_percentiles must be [low, high] with 0 <= low < high <= 100")
        return self


class ZeroshotConfig(Section):
    seed: int = 0
    batch_size: int = Field(32, ge=1)
    allow_random_init: bool = False
    scoring: Literal["chexzero", "cosine"] = "chexzero"
    prompts: str = "medvit/zeroshot/prompts.yaml"
    linear_probe: LinearProbeConfig = LinearProbeConfig()
    medical: ZeroshotDomain = ZeroshotDomain(rgb="replicate")
    satellite: ZeroshotDomain = ZeroshotDomain(rgb="bands", rgb_bands=("B4", "B3", "B2"))


# --------------------------------------------------------------------------- evaluate / register
class EvaluateSubgroups(Section):
    """Manifest columns whose values form the subgroups of ``subgroups.csv``, per domain."""

    medical: tuple[str, ...] = ("sex", "age_band", "view", "manufacturer", "manufacturer_model", "site")
    satellite: tuple[str, ...] = ("scene", "tile", "country", "season", "nodata_fraction")


class EvaluateConfig(Section):
    seed: int = 0
    threshold_method: Literal["youden", "f1", "sensitivity"] = "youden"
    target_sensitivity: float = Field(0.9, gt=0, lt=1)
    fixed_specificity: float = Field(0.9, gt=0, lt=1)
    n_bootstrap: int = Field(1000, ge=0)
    ci_level: float = Field(0.95, gt=0, lt=1)
    ece_bins: int = Field(10, ge=2)
    n_attention_maps: int = Field(4, ge=0)
    subgroups: EvaluateSubgroups = EvaluateSubgroups()
    min_groups: int = Field(10, ge=2)            # fewer groups: "too few groups for an interval" (issue #14)
    n_failure_cases: int = Field(3, ge=0)         # top-k false positives and negatives per label
    upload_patient_pixels: bool = False           # medical overlays to MLflow (default: local report only)


class RegisterConfig(Section):
    min_auroc: float = Field(0.8, ge=0, le=1)
    min_margin: float = 0.0
    fail_on_gate: bool = False
    onnx: bool = True
    onnx_opset: int = Field(17, ge=17)
    # Shown first in each version's review report (issue #14): what the model is for and what it is not.
    intended_use: str = ""
    limitations: str = ""


# "register" is also ABCMeta.register on the class; pydantic warns, but instances resolve the field.
warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)


class Params(Section):
    sample: SampleConfig = SampleConfig()
    ingest: IngestConfig = IngestConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    zeroshot: ZeroshotConfig = ZeroshotConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    register: RegisterConfig = RegisterConfig()

    def value(self, key: str) -> Any:
        """The JSON value at dotted ``key`` (validated, defaults filled in), not recorded as a read.

        Raises:
            KeyError: no such key.
        """
        with unrecorded():
            node: Any = self.model_dump(mode="json")
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(key)
            node = node[part]
        return node


def _valid_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the sub-model that ``loc`` (minus its last item) points at."""
    current: Any = model
    for part in loc[:-1]:
        if getattr(current, "__origin__", None) is dict:  # a mapping's key: step into its value type
            current = current.__args__[1]
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = field.annotation
    return list(getattr(current, "model_fields", {}))


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid parameters:"]
    for e in err.errors():
        loc = tuple(e["loc"])
        key = ".".join(str(p) for p in loc) or "<root>"
        if e["type"] == "extra_forbidden":
            valid = _valid_keys(Params, loc)
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            lines.append(f"  - {key}: unknown key{hint}; valid keys here: {', '.join(valid)}")
        else:
            lines.append(f"  - {key}: {e['msg']} (got {e.get('input')!r})")
    lines.append("Fix the key(s) above in the params file and re-run.")
    return "\n".join(lines)


def parse_params(data: dict[str, Any] | None, source: str = "params") -> Params:
    """Validate a params mapping into frozen ``Params``.

    Raises:
        ConfigError: naming each bad key and how to fix it.
    """
    try:
        params = Params.model_validate(data or {})
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None
    tag_paths(params, "")
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params YAML file.

    Raises:
        ConfigError: the file is missing, is not YAML, or has bad keys or types.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found. Run from the repo root or pass --params FILE.")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return parse_params(data, str(path))
