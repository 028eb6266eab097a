"""DICOM Comprehensive 3D SR of one image's model result, written with highdicom (MIT).

The document is a TID 1500 Measurement Report with one measurement group
(TID 1501) that references the source image (SOP Class / SOP Instance UID,
in the source's study; the source series and study are recorded in the
evidence sequence) and holds, per label:

* a measurement: the score (UCUM ``1``, no units), with the model as
  Algorithm Identification (name = registered model, version = its version,
  parameters = the per-label thresholds);
* a qualitative evaluation: SNOMED CT Present / Absent, thresholded as the
  model card says (positive when score >= threshold).

Labels are coded in the private scheme ``99MEDVIT`` (PS3.16 8.1: a scheme
designator starting with ``99`` is local). The document says it is not for
clinical use three ways: the series description, a Comment text item at the root
of the content tree, and its flags (PRELIMINARY, UNVERIFIED).

De-identification (``medvit.deid``): highdicom copies *every* Patient, General
Study, Patient Study and Clinical Trial attribute present in the first evidence
data set into the SR (``copy_patient_and_study_information``): age, weight,
ethnic group, study description, comments, ... So the source data set is never
handed to highdicom. ``SourceReference`` keeps only the four UIDs the reference
needs, the modality and the keyed patient pseudonym; the evidence highdicom sees is
built from it, with the PS3.15 Annex E Basic Profile ``Z`` attributes
(PatientName, PatientBirthDate, PatientSex, AccessionNumber, StudyID,
StudyDate, StudyTime, ReferringPhysicianName) zero-length and PatientID set to
``Pseudonymizer.patient`` of the source's PatientID (the manifest's group
pseudonym). The source UIDs are kept unchanged, unlike ingest's ``U`` action:
they are what makes the SR a reference to that image, and they are already in
the image the SR is filed with. The SR's own ContentDate/Time are the time it was
written (the SR Document General module requires them); no source date is copied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import UID

from medvit.io.dicom import DicomFile
from medvit.io.dicom_values import value

NOT_FOR_CLINICAL_USE = "NOT FOR CLINICAL USE"
SCHEME = "99MEDVIT"
SERIES_DESCRIPTION = f"medvit model result - {NOT_FOR_CLINICAL_USE}"
# PS3.15 Annex E "Z" attributes of the Patient and General Study modules highdicom requires (Type 2).
_EMPTY = ("PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "StudyDate", "StudyTime",
          "ReferringPhysicianName")


class SrError(ValueError):
    """The source cannot be referenced by an SR (a UID is missing)."""


@dataclass(frozen=True)
class SourceReference:
    """What an SR may carry from its source image: UIDs, modality and the pseudonymous patient."""

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    modality: str
    patient: str  # medvit.deid.Pseudonymizer.patient of the source PatientID


def source_reference(info: DicomFile, patient: str) -> SourceReference:
    """The reference to a parsed source file; ``patient`` is its keyed pseudonym.

    Raises:
        SrError: the file lacks one of the UIDs a reference needs.
    """
    uids = {}
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        text = str(value(info.ds, keyword) or "").strip()
        if not text:
            raise SrError(f"no {keyword}: the image cannot be referenced by an SR")
        uids[keyword] = text
    modality = str(value(info.ds, "Modality") or "OT").strip() or "OT"
    return SourceReference(uids["SOPClassUID"], uids["SOPInstanceUID"], uids["StudyInstanceUID"],
                           uids["SeriesInstanceUID"], modality, patient)


def _evidence(ref: SourceReference) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = ref.sop_class_uid
    ds.SOPInstanceUID = ref.sop_instance_uid
    ds.StudyInstanceUID = ref.study_instance_uid
    ds.SeriesInstanceUID = ref.series_instance_uid
    ds.Modality = ref.modality
    ds.PatientID = ref.patient
    for keyword in _EMPTY:
        setattr(ds, keyword, None)
    return ds


def _label(name: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value=name, scheme_designator=SCHEME, meaning=name)


def _score(name: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value=f"score:{name}", scheme_designator=SCHEME, meaning=f"{name} score")


def build_sr(
    ref: SourceReference,
    *,
    model_name: str,
    model_version: str,
    label_names: Sequence[str],
    scores: Sequence[float],
    thresholds: Sequence[float],
    frame: int | None = None,
) -> hd.sr.Comprehensive3DSR:
    """The SR of one image: scores, thresholded findings, model name and version, reference to the source.

    ``frame``: the 0-based frame the scores are of, for a multi-frame source (referenced as frame ``frame + 1``).
    """
    if not (len(label_names) == len(scores) == len(thresholds)):
        raise ValueError(f"{len(label_names)} labels, {len(scores)} scores, {len(thresholds)} thresholds")
    evidence = _evidence(ref)
    algorithm = hd.sr.AlgorithmIdentification(
        name=model_name, version=str(model_version),
        parameters=[f"threshold {n} = {float(t):.6g}" for n, t in zip(label_names, thresholds)])
    measurements = [hd.sr.Measurement(name=_score(n), value=float(s), unit=codes.UCUM.NoUnits, algorithm_id=algorithm)
                    for n, s in zip(label_names, scores)]
    findings = [hd.sr.QualitativeEvaluation(name=_label(n), value=codes.SCT.Present if s >= t else codes.SCT.Absent)
                for n, s, t in zip(label_names, scores, thresholds)]
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"{model_name} v{model_version}"),
        algorithm_id=algorithm,
        measurements=measurements,
        qualitative_evaluations=findings,
        source_images=[hd.sr.SourceImageForMeasurementGroup(
            ref.sop_class_uid, ref.sop_instance_uid, None if frame is None else [frame + 1])],
    )
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name=model_name, manufacturer_name="medvit", model_name=model_name,
            serial_number=str(model_version)))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.SCT.ImagingProcedure,
        imaging_measurements=[group],
    )
    # Root-level comment: the document states its status in its content, not only in its header.
    report[0].ContentSequence.append(hd.sr.TextContentItem(
        name=codes.DCM.Comment, value=f"{NOT_FOR_CLINICAL_USE}: machine-generated research result of "
        f"{model_name} version {model_version}; not reviewed by a clinician.",
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
    return hd.sr.Comprehensive3DSR(
        evidence=[evidence], content=report, series_instance_uid=hd.UID(), series_number=900,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="medvit", is_complete=True, is_final=False,
        is_verified=False, series_description=SERIES_DESCRIPTION)


def write_sr(path: str | Path, ref: SourceReference, **kwargs: Any) -> Path:
    """Build the SR (``build_sr`` keyword arguments) and save it as a DICOM Part 10 file at ``path``."""
    sr = build_sr(ref, **kwargs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    sr.save_as(tmp, enforce_file_format=True)
    tmp.replace(path)
    return path


@dataclass(frozen=True)
class SrContent:
    """What ``read_sr`` finds in an SR (for checks and round-trip tests)."""

    referenced_sop_instance_uid: str
    study_instance_uid: str
    model_name: str
    model_version: str
    scores: dict[str, float]
    findings: dict[str, bool]
    comment: str


def read_sr(path: str | Path) -> SrContent:
    """Parse an SR written by ``write_sr`` back through highdicom's own reader (``srread``)."""
    sr = hd.sr.srread(path)
    if not isinstance(sr, hd.sr.Comprehensive3DSR):
        raise SrError(f"{path}: not a Comprehensive 3D SR ({UID(sr.SOPClassUID).name})")
    (group,) = sr.content.get_image_measurement_groups()
    (source,) = group.source_images
    name, version = (str(group[0].ContentSequence.find(c)[0].TextValue) for c in (codes.DCM.AlgorithmName, codes.DCM.AlgorithmVersion))
    scores = {m.name.meaning.removesuffix(" score"): float(m.value) for m in group.get_measurements()}
    findings = {q.name.meaning: q.value == codes.SCT.Present for q in group.get_qualitative_evaluations()}
    comment = str(sr.content[0].ContentSequence.find(codes.DCM.Comment)[0].TextValue)
    return SrContent(source.referenced_sop_instance_uid, str(sr.StudyInstanceUID), name, version,
                     scores, findings, comment)

