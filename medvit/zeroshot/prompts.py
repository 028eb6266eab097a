"""Zero-shot prompt sets: templates stored as data (prompts.yaml), resolved per label.

The YAML layout is documented at the top of ``medvit/zeroshot/prompts.yaml``. A
resolved ``PromptSet`` holds, for each cache label in ``label_names`` order, its
positive and negative prompt ensembles; ``digest()`` is the prompt hash logged with
every run, computed over the resolved prompts only, so editing another domain's
prompts does not change it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from medvit.errors import UserError
from medvit.hashing import sha256_json

PLACEHOLDER = "{label}"


@dataclass(frozen=True)
class LabelPrompts:
    """The prompt ensembles of one label."""

    label: str
    display: str
    positive: tuple[str, ...]
    negative: tuple[str, ...]


@dataclass(frozen=True)
class PromptSet:
    """Resolved prompts of one domain, one entry per label in cache order."""

    domain: str
    labels: tuple[LabelPrompts, ...]
    defaulted: tuple[str, ...]  # labels with no entry in the YAML (default templates, own name)

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(p.label for p in self.labels)

    def texts(self) -> list[str]:
        """Every distinct prompt string, in first-use order (encode these once)."""
        seen: dict[str, None] = {}
        for p in self.labels:
            for t in (*p.positive, *p.negative):
                seen.setdefault(t, None)
        return list(seen)

    def to_dict(self) -> dict[str, Any]:
        return {"domain": self.domain,
                "labels": {p.label: {"display": p.display, "positive": list(p.positive),
                                     "negative": list(p.negative)} for p in self.labels}}

    def digest(self) -> str:
        """Short sha256 of the resolved prompts (the ``prompt_hash`` tag)."""
        return sha256_json(self.to_dict(), 12, ensure_ascii=False)


def _key(name: str) -> str:
    return name.strip().lower().replace("_", " ").replace("-", " ")


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise UserError(f"{where}: expected a non-empty list of prompt strings, got {value!r}")
    return tuple(value)


def _fill(templates: tuple[str, ...], display: str) -> tuple[str, ...]:
    # str.replace, not str.format: prompts may contain other braces.
    return tuple(t.replace(PLACEHOLDER, display) for t in templates)


def load_prompts(path: str | Path, domain: str, label_names: Sequence[str]) -> PromptSet:
    """Resolve the prompt ensembles of ``label_names`` from the YAML at ``path``.

    Raises:
        UserError: the file is missing or malformed (naming the file, key and fix).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: prompt file not found; set zeroshot.prompts in params.yaml to a prompts YAML "
                        f"(the default is medvit/zeroshot/prompts.yaml)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML: {err}") from None
    section = (data or {}).get(domain) if isinstance(data, dict) else None
    if not isinstance(section, dict):
        raise UserError(f"{path}: no '{domain}:' section; add one with templates.positive / templates.negative")
    templates = section.get("templates") or {}
    where = f"{path}: {domain}.templates"
    pos_t = _str_list(templates.get("positive"), f"{where}.positive")
    neg_t = _str_list(templates.get("negative"), f"{where}.negative")
    for t in pos_t:  # a shared negative ("a normal chest x-ray") is fine; a shared positive is not
        if PLACEHOLDER not in t:
            raise UserError(f"{where}.positive: template {t!r} lacks {PLACEHOLDER}; every label would get the "
                            f"same positive prompt")
    entries = section.get("labels") or {}
    if not isinstance(entries, dict):
        raise UserError(f"{path}: {domain}.labels must be a mapping of label name -> {{name, positive, negative}}")
    by_key = {_key(str(k)): (str(k), v or {}) for k, v in entries.items()}
    resolved, defaulted = [], []
    for label in label_names:
        raw_key, entry = by_key.get(_key(label), (None, None))
        if entry is None:
            defaulted.append(label)
            entry = {}
        if not isinstance(entry, dict):
            raise UserError(f"{path}: {domain}.labels.{raw_key} must be a mapping with name/positive/negative")
        unknown = set(entry) - {"name", "positive", "negative"}
        if unknown:
            raise UserError(f"{path}: {domain}.labels.{raw_key}: unknown keys {sorted(unknown)}; "
                            f"valid keys: name, positive, negative")
        display = str(entry.get("name") or label.replace("_", " "))
        lw = f"{path}: {domain}.labels.{raw_key}"
        pos = _str_list(entry["positive"], f"{lw}.positive") if "positive" in entry else pos_t
        neg = _str_list(entry["negative"], f"{lw}.negative") if "negative" in entry else neg_t
        resolved.append(LabelPrompts(label=label, display=display, positive=_fill(pos, display),
                                     negative=_fill(neg, display)))
    return PromptSet(domain=domain, labels=tuple(resolved), defaulted=tuple(defaulted))
