"""De-identification: what DICOM metadata may leave ingest, and keyed-hash pseudonyms.

Policy (the ingest issue, DICOM PS3.15 Annex E):

* Only the attributes in ``ALLOWED`` are ever written (manifest provenance
  columns). Every other attribute, private tags and overlay/curve groups
  included, never leaves the worker that read the file.
* Each allowed attribute first goes through its PS3.15 Annex E Table E.1-1
  Basic Profile action (``BASIC_PROFILE``): ``X`` removes it, ``Z`` empties it,
  ``D`` replaces it with a dummy, ``U`` replaces a UID with a consistent keyed
  pseudonym UID; attributes the profile does not list are kept (``K``), and
  coded-string values are checked against the CS character repertoire
  (PS3.5 6.2) so free text cannot slip through a coded field.
* Besides them, the medical manifest keeps subgroup columns under PS3.15's
  Retain Patient Characteristics option (``medvit.ingest.demographics``): sex,
  a decade age band, view, device, and a keyed pseudonym of InstitutionName;
  never the raw values of identifying or date attributes.
* Patient and study identifiers become HMAC-SHA256 pseudonyms (RFC 2104) under a
  secret key, so the same patient always maps to the same group without the
  mapping being reversible by anyone without the key. The key comes from
  ``$MEDVIT_DEID_KEY``, else the git-ignored file ``.medvit-deid-key`` in the
  working directory, else a public demo default that logs a warning (the
  pseudonyms are then only as secret as this source file).
* ``source`` paths are written relative to ``--raw``; a path that contains a
  known identifier of its file (DICOM PatientID/PatientName/AccessionNumber/...
  or the labels CSV ``Patient ID``) is replaced by a keyed pseudonym
  ``pseudo:<hex>`` (``Pseudonymizer.source``), since users name files after
  patients (ChestX-ray14 ``Image Index`` starts with the patient number).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

KEY_ENV = "MEDVIT_DEID_KEY"
KEY_FILE = ".medvit-deid-key"
# Public on purpose: only for the embedded demo data. Real data needs a real key.
DEMO_KEY = "medvit-demo-deid-key-NOT-SECRET"

# PS3.15 Annex E Table E.1-1, Basic Profile column (by keyword). Codes: D dummy,
# Z zero-length or dummy, X remove, K keep, C clean, U replace UID; compound
# codes (X/Z, X/D, Z/D, X/Z/D, X/Z/U*) are applied as their strictest part.
BASIC_PROFILE: dict[str, str] = {
    "AccessionNumber": "Z", "AcquisitionComments": "X", "AcquisitionContextSequence": "X",
    "AcquisitionDate": "X/Z", "AcquisitionDateTime": "X/Z", "AcquisitionDeviceProcessingDescription": "X/D",
    "AcquisitionProtocolDescription": "X", "AcquisitionTime": "X/Z", "ActualHumanPerformersSequence": "X",
    "AdditionalPatientHistory": "X", "AdmissionID": "X", "AdmittingDate": "X", "AdmittingDiagnosesCodeSequence": "X",
    "AdmittingDiagnosesDescription": "X", "AdmittingTime": "X", "AffectedSOPInstanceUID": "X",
    "Allergies": "X", "Arbitrary": "X", "AuthorObserverSequence": "X", "BranchOfService": "X",
    "CassetteID": "X", "CommentsOnThePerformedProcedureStep": "X", "ConcatenationUID": "U",
    "ConfidentialityConstraintOnPatientDataDescription": "X", "ContentCreatorName": "Z",
    "ContentCreatorIdentificationCodeSequence": "X", "ContentDate": "Z/D", "ContentTime": "Z/D",
    "ContextGroupExtensionCreatorUID": "U", "ContrastBolusAgent": "Z/D", "CountryOfResidence": "X",
    "CreatorVersionUID": "U", "CurrentPatientLocation": "X", "CurveDate": "X", "CurveTime": "X",
    "CustodialOrganizationSequence": "X", "DataSetTrailingPadding": "X", "DerivationDescription": "X",
    "DetectorID": "X", "DeviceSerialNumber": "X/Z/D", "DeviceUID": "U", "DigitalSignaturesSequence": "X",
    "DimensionOrganizationUID": "U", "DischargeDiagnosisDescription": "X", "DistributionAddress": "X",
    "DistributionName": "X", "DoseReferenceUID": "U", "EthnicGroup": "X", "FailedSOPInstanceUIDList": "U",
    "FiducialUID": "U", "FillerOrderNumberImagingServiceRequest": "Z", "FrameComments": "X",
    "FrameOfReferenceUID": "U", "GantryID": "X", "GeneratorID": "X", "GraphicAnnotationSequence": "D",
    "HumanPerformerName": "X", "HumanPerformerOrganization": "X", "IconImageSequence": "X",
    "IdentifyingComments": "X", "ImageComments": "X", "ImagePresentationComments": "X",
    "ImagingServiceRequestComments": "X", "Impressions": "X", "InstanceCreationDate": "X",
    "InstanceCreationTime": "X", "InstanceCreatorUID": "U", "InstitutionAddress": "X",
    "InstitutionCodeSequence": "X/Z/D", "InstitutionName": "X/Z/D", "InstitutionalDepartmentName": "X",
    "InsurancePlanIdentification": "X", "IntendedRecipientsOfResultsIdentificationSequence": "X",
    "InterpretationApproverSequence": "X", "InterpretationAuthor": "X", "InterpretationDiagnosisDescription": "X",
    "InterpretationIDIssuer": "X", "InterpretationRecorder": "X", "InterpretationText": "X",
    "InterpretationTranscriber": "X", "IrradiationEventUID": "U", "IssuerOfAdmissionID": "X",
    "IssuerOfPatientID": "X", "IssuerOfServiceEpisodeID": "X", "LargePaletteColorLookupTableUID": "U",
    "MAC": "X", "MediaStorageSOPInstanceUID": "U", "MedicalAlerts": "X", "MedicalRecordLocator": "X",
    "MilitaryRank": "X", "ModifiedAttributesSequence": "X", "ModifiedImageDescription": "X",
    "ModifyingDeviceID": "X", "ModifyingDeviceManufacturer": "X", "NameOfPhysiciansReadingStudy": "X",
    "NamesOfIntendedRecipientsOfResults": "X", "Occupation": "X", "OperatorIdentificationSequence": "X",
    "OperatorsName": "X/Z/D", "OriginalAttributesSequence": "X", "OrderCallbackPhoneNumber": "X",
    "OrderEnteredBy": "X", "OrderEntererLocation": "X", "OtherPatientIDs": "X",
    "OtherPatientIDsSequence": "X", "OtherPatientNames": "X", "OverlayComments": "X", "OverlayDate": "X",
    "OverlayTime": "X", "PaletteColorLookupTableUID": "U", "ParticipantSequence": "X",
    "PatientAddress": "X", "PatientAge": "X", "PatientBirthDate": "Z", "PatientBirthName": "X",
    "PatientBirthTime": "X", "PatientComments": "X", "PatientID": "Z", "PatientInsurancePlanCodeSequence": "X",
    "PatientMotherBirthName": "X", "PatientName": "Z", "PatientPrimaryLanguageCodeSequence": "X",
    "PatientReligiousPreference": "X", "PatientSex": "Z", "PatientSexNeutered": "X/Z", "PatientSize": "X",
    "PatientState": "X", "PatientTelephoneNumbers": "X", "PatientTransportArrangements": "X",
    "PatientWeight": "X", "PerformedLocation": "X", "PerformedProcedureStepDescription": "X",
    "PerformedProcedureStepEndDate": "X", "PerformedProcedureStepID": "X",
    "PerformedProcedureStepStartDate": "X", "PerformedProcedureStepStartTime": "X",
    "PerformedStationAETitle": "X", "PerformedStationName": "X", "PerformingPhysicianIdentificationSequence": "X",
    "PerformingPhysicianName": "X", "PersonAddress": "X", "PersonIdentificationCodeSequence": "D",
    "PersonName": "D", "PersonTelephoneNumbers": "X", "PhysicianApprovingInterpretation": "X",
    "PhysiciansOfRecord": "X", "PhysiciansOfRecordIdentificationSequence": "X",
    "PhysiciansReadingStudyIdentificationSequence": "X", "PlacerOrderNumberImagingServiceRequest": "Z",
    "PlateID": "X", "PreMedication": "X", "PregnancyStatus": "X", "ReasonForTheImagingServiceRequest": "X",
    "ReasonForStudy": "X", "ReferencedDigitalSignatureSequence": "X", "ReferencedFrameOfReferenceUID": "U",
    "ReferencedGeneralPurposeScheduledProcedureStepTransactionUID": "U", "ReferencedImageSequence": "X/Z/U*",
    "ReferencedPatientAliasSequence": "X", "ReferencedPatientSequence": "X",
    "ReferencedPerformedProcedureStepSequence": "X/Z/D", "ReferencedSOPInstanceMACSequence": "X",
    "ReferencedSOPInstanceUID": "U", "ReferencedStudySequence": "X/Z", "ReferringPhysicianAddress": "X",
    "ReferringPhysicianIdentificationSequence": "X", "ReferringPhysicianName": "Z",
    "ReferringPhysicianTelephoneNumbers": "X", "RegionOfResidence": "X", "RelatedFrameOfReferenceUID": "U",
    "RequestAttributesSequence": "X", "RequestedContrastAgent": "X", "RequestedProcedureComments": "X",
    "RequestedProcedureDescription": "X/Z", "RequestedProcedureID": "X", "RequestedProcedureLocation": "X",
    "RequestedSOPInstanceUID": "U", "RequestingPhysician": "X", "RequestingService": "X",
    "ResponsibleOrganization": "X", "ResponsiblePerson": "X", "ResultsComments": "X",
    "ResultsDistributionListSequence": "X", "ResultsIDIssuer": "X", "ReviewerName": "X/Z",
    "ScheduledHumanPerformersSequence": "X", "ScheduledPatientInstitutionResidence": "X",
    "ScheduledPerformingPhysicianIdentificationSequence": "X", "ScheduledPerformingPhysicianName": "X",
    "ScheduledProcedureStepEndDate": "X", "ScheduledProcedureStepLocation": "X",
    "ScheduledProcedureStepStartDate": "X", "ScheduledStationAETitle": "X", "ScheduledStationName": "X",
    "SeriesDate": "X", "SeriesDescription": "X", "SeriesInstanceUID": "U", "SeriesTime": "X",
    "ServiceEpisodeDescription": "X", "ServiceEpisodeID": "X", "SmokingStatus": "X",
    "SOPInstanceUID": "U", "SourceImageSequence": "X/Z/U*", "SpecialNeeds": "X", "StationName": "X/Z/D",
    "StorageMediaFileSetUID": "U", "StudyComments": "X", "StudyDate": "Z", "StudyDescription": "X",
    "StudyID": "Z", "StudyIDIssuer": "X", "StudyInstanceUID": "U", "StudyTime": "Z",
    "SynchronizationFrameOfReferenceUID": "U", "TemplateExtensionCreatorUID": "U",
    "TemplateExtensionOrganizationUID": "U", "TextComments": "X", "TextString": "X",
    "TimezoneOffsetFromUTC": "X", "TopicAuthor": "X", "TopicKeywords": "X", "TopicSubject": "X",
    "TopicTitle": "X", "TransactionUID": "U", "UID": "U", "VerifyingObserverIdentificationCodeSequence": "Z",
    "VerifyingObserverName": "D", "VerifyingObserverSequence": "D", "VerifyingOrganization": "X",
    "VisitComments": "X",
}

# Metadata that may leave ingest: DICOM keyword -> manifest column. Coded or
# numeric attributes only; StudyInstanceUID leaves as its ``U`` pseudonym.
ALLOWED: dict[str, str] = {
    "Modality": "modality",
    "SOPClassUID": "sop_class",
    "PhotometricInterpretation": "photometric",
    "Rows": "rows",
    "Columns": "columns",
    "BitsStored": "bits_stored",
    "NumberOfFrames": "n_frames",
    "PixelSpacing": "pixel_spacing",
    "ImagerPixelSpacing": "imager_pixel_spacing",
    "ViewPosition": "view_position",
    "BodyPartExamined": "body_part",
    "StudyInstanceUID": "study",
}

# Attributes whose values may identify a patient in a file or path name.
IDENTIFYING: tuple[str, ...] = (
    "PatientID", "PatientName", "OtherPatientIDs", "OtherPatientNames", "AccessionNumber", "StudyID",
    "PatientBirthDate", "MedicalRecordLocator", "AdmissionID",
)

_CS = re.compile(r"^[A-Z0-9 _\\]{0,64}$")  # PS3.5 6.2 Code String repertoire (backslash: multi-value)
_NUMERIC = re.compile(r"^[0-9eE+\-. \\\[\],']{0,128}$")
_TOKEN = re.compile(r"[A-Za-z0-9]+")


def load_key(cwd: str | Path | None = None) -> tuple[bytes, str]:
    """The pseudonymisation key and where it came from (``env``, ``file`` or ``demo-default``)."""
    value = os.environ.get(KEY_ENV, "")
    if value:
        return value.encode(), "env"
    path = Path(cwd or ".") / KEY_FILE
    if path.is_file():
        text = path.read_text().strip()
        if text:
            return text.encode(), "file"
    log.warning(
        "de-identification key: using the PUBLIC demo default. Set $%s or write a secret to %s "
        "(git-ignored) before ingesting real patient data.", KEY_ENV, KEY_FILE,
    )
    return DEMO_KEY.encode(), "demo-default"


class Pseudonymizer:
    """Consistent keyed-hash (HMAC-SHA256) pseudonyms for identifiers, UIDs and paths."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _digest(self, kind: str, value: str) -> str:
        return hmac.new(self._key, f"{kind}\x00{value}".encode(), hashlib.sha256).hexdigest()

    def token(self, kind: str, value: str, n: int = 16) -> str:
        """``n`` hex characters of HMAC(key, kind || value); ``kind`` separates namespaces."""
        return self._digest(kind, value)[:n]

    def patient(self, patient_id: str) -> str:
        """Pseudonymous patient (the split group)."""
        return "P" + self.token("patient", patient_id.strip())

    def uid(self, uid: str) -> str:
        """A consistent replacement UID under the UUID-derived root 2.25 (PS3.5 B.2)."""
        return "2.25." + str(int(self._digest("uid", uid.strip())[:30], 16))

    def sample(self, source: str, frame: int) -> str:
        """Pseudonymous sample id of one frame of one file."""
        return "S" + self.token("sample", f"{source}#{frame}")

    def source(self, relpath: str, identifiers: Iterable[str]) -> str:
        """``relpath`` unless it contains one of ``identifiers``; then ``pseudo:<hex>``."""
        return f"pseudo:{self.token('source', relpath)}" if path_has_identifier(relpath, identifiers) else relpath

    @property
    def fingerprint(self) -> str:
        """Short key fingerprint (tells whether two caches used the same key; reveals nothing)."""
        return self.token("fingerprint", "", 8)


def path_has_identifier(relpath: str, identifiers: Iterable[str]) -> bool:
    """Whether a path contains an identifier, as a substring or as a zero-padded number token."""
    low = relpath.lower()
    tokens = {t.lstrip("0") or "0" for t in _TOKEN.findall(low)}
    for ident in identifiers:
        ident = str(ident).strip().lower()
        if not ident:
            continue
        parts = [p for p in _TOKEN.findall(ident) if p]
        # Substring match for distinctive identifiers; token match (zero padding
        # ignored) for short numeric ones like ChestX-ray14's "1" in 00000001_000.png.
        if len(ident) >= 4 and ident in low:
            return True
        if any((p.lstrip("0") or "0") in tokens for p in parts if len(p) >= 4 or p.isdigit()):
            return True
    return False


def _action(keyword: str) -> str:
    """Strictest part of a compound Annex E code (X beats Z beats D beats U beats K)."""
    code = BASIC_PROFILE.get(keyword, "K")
    for strict in ("X", "Z", "D", "U"):
        if strict in code:
            return strict
    return "K"


def _clean(keyword: str, value: Any) -> str:
    """Render an allowed value as text, dropping anything outside its expected repertoire."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    text = text.strip()
    if keyword in ("Rows", "Columns", "BitsStored", "NumberOfFrames", "PixelSpacing", "ImagerPixelSpacing"):
        return text if _NUMERIC.match(text) else ""
    if keyword == "SOPClassUID":
        return text if re.fullmatch(r"[0-9.]{1,64}", text) else ""
    return text if _CS.match(text) else ""


def deidentify(header: Mapping[str, Any], pseudo: Pseudonymizer) -> dict[str, str]:
    """Manifest provenance columns from a raw header: allow-list, then Annex E actions.

    Args:
        header: DICOM keyword -> value, straight from the file (may hold PHI).
        pseudo: the keyed pseudonymizer.

    Returns:
        Column name -> text for every ``ALLOWED`` attribute (empty when absent or removed).
    """
    out: dict[str, str] = {}
    for keyword, column in ALLOWED.items():
        value = header.get(keyword)
        action = _action(keyword)
        if value in (None, "") or action in ("X", "Z"):
            out[column] = ""
        elif action == "U":
            out[column] = pseudo.uid(str(value))
        elif action == "D":
            out[column] = "ANONYMIZED"
        else:
            out[column] = _clean(keyword, value)
    return out


def identifiers(header: Mapping[str, Any]) -> list[str]:
    """Identifying values of a header (to check paths against; never written)."""
    values: list[str] = []
    for keyword in IDENTIFYING:
        value = header.get(keyword)
        if value in (None, ""):
            continue
        for part in value if isinstance(value, (list, tuple)) else [value]:
            text = str(part).strip()
            if text:
                values.append(text)
                values.extend(p for p in re.split(r"[\^ ]+", text) if len(p) >= 3)  # PN components
    return values
