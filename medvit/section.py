"""The base of the typed params sections: frozen, unknown keys forbidden, and reads recorded.

Attribute access on a ``Section`` is the one accessor every stage reads params
through. With ``MEDVIT_RECORD_PARAMS=<file>`` set, ``record_reads`` makes it
append one ``stage<TAB>domain<TAB>key`` line per distinct key read (a dump of a
section counts as reading each of its leaves; reading a sub-section alone is not
a read), so tests can check that a stage declares in dvc.yaml exactly the params
its code reads.
"""

from __future__ import annotations

import functools
import os
import typing
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from pydantic import BaseModel, ConfigDict, PrivateAttr

DOMAINS: tuple[str, ...] = ("medical", "satellite")
RECORD_ENV = "MEDVIT_RECORD_PARAMS"


class ReadRecorder:
    """Appends ``stage<TAB>domain<TAB>key`` to a file, once per distinct key."""

    def __init__(self, path: str | Path, stage: str, domain: str) -> None:
        self.path, self.stage, self.domain = Path(path), stage, domain
        self._seen: set[str] = set()

    def read(self, key: str) -> None:
        if key not in self._seen:
            self._seen.add(key)
            # One short append per line: safe from several processes (forked ingest workers).
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(f"{self.stage}\t{self.domain}\t{key}\n")


_recorder: ReadRecorder | None = None


def record_reads(stage: str, domain: str) -> None:
    """Record the params keys this process reads to ``$MEDVIT_RECORD_PARAMS`` (no-op when unset)."""
    global _recorder
    target = os.environ.get(RECORD_ENV)
    _recorder = ReadRecorder(target, stage, domain) if target else None


@contextmanager
def unrecorded() -> Iterator[None]:
    """Suspend recording: for lineage look-ups of other stages' params, which are provenance, not inputs."""
    global _recorder
    saved, _recorder = _recorder, None
    try:
        yield
    finally:
        _recorder = saved


def _leaf_keys(value: Any, prefix: str) -> Iterator[str]:
    """Dotted keys of the leaves of a dumped mapping (an empty mapping is a leaf)."""
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            yield from _leaf_keys(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix


class Section(BaseModel):
    """A frozen params section (unknown keys are an error) whose field reads are recorded when enabled."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)
    _path: str = PrivateAttr("")  # dotted position in params.yaml, set by parse_params

    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)
        if _recorder is not None and name in type(self).model_fields and name not in _section_maps(type(self)):
            path = object.__getattribute__(self, "__pydantic_private__")["_path"]
            if not isinstance(value, Section):  # a sub-section records the reads of its own fields
                _recorder.read(f"{path}.{name}" if path else name)
        return value

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        out = super().model_dump(**kwargs)
        if _recorder is not None:
            for key in _leaf_keys(out, self._path):
                _recorder.read(key)
        return out

    def dump_for(self, domain: str) -> dict[str, Any]:
        """``model_dump(mode="json")`` without other domains' sub-sections: what a ``domain`` stage depends on."""
        return self.model_dump(mode="json", exclude=_other_domains(self, domain))


def _other_domains(section: BaseModel, domain: str) -> dict[str, Any]:
    """A pydantic ``exclude`` spec of every field named after a domain other than ``domain``, at any depth."""
    spec: dict[str, Any] = {}
    for name in type(section).model_fields:
        value = object.__getattribute__(section, name)
        if (name in DOMAINS and name != domain) or (name in _section_maps(type(section)) and not value):
            spec[name] = True  # other domains' sub-sections; an empty per-domain map holds no params
        elif isinstance(value, BaseModel) and (sub := _other_domains(value, domain)):
            spec[name] = sub
        elif isinstance(value, dict) and any(k in DOMAINS and k != domain for k in value):
            spec[name] = {k: True for k in value if k in DOMAINS and k != domain}
    return spec


@functools.cache
def _section_maps(cls: type[BaseModel]) -> frozenset[str]:
    """Fields of ``cls`` that map names to sections (``finetune.domains``): their values record their reads."""
    names = []
    for name, field in cls.model_fields.items():
        args = typing.get_args(field.annotation)
        if typing.get_origin(field.annotation) is dict and isinstance(args[1], type) and issubclass(args[1], Section):
            names.append(name)
    return frozenset(names)


def tag_paths(section: Section, path: str) -> None:
    """Set ``_path`` on ``section`` and every section below it."""
    section._path = path  # noqa: SLF001 - the private attribute of this module's own class
    for name in type(section).model_fields:
        value = object.__getattribute__(section, name)
        key = f"{path}.{name}" if path else name
        if isinstance(value, Section):
            tag_paths(value, key)
        elif isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, Section):
                    tag_paths(v, f"{key}.{k}")
