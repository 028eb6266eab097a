"""Pull raw data from a remote source into a raw folder in front of ingest; for now a PACS over DICOMweb.

Examples::

    export MEDVIT_DICOMWEB_USER=svc-medvit MEDVIT_DICOMWEB_PASSWORD=...   # or MEDVIT_DICOMWEB_TOKEN=...
    medvit pull dicomweb --url https://pacs.example.org/dicom-web \\
        --query Modality=CR --query StudyDate=20240101-20241231 --out data/raw/pacs/images

Searches with QIDO-RS and retrieves with WADO-RS; each instance becomes a Part 10 file named by a
hash of its SOP Instance UID. Instances already in --out are skipped, so a re-run resumes an
interrupted pull and downloads only what is new. Credentials come from the environment only
(MEDVIT_DICOMWEB_USER / MEDVIT_DICOMWEB_PASSWORD, or MEDVIT_DICOMWEB_TOKEN);
MEDVIT_DICOMWEB_CONNECTIONS (default 4) bounds the parallel retrievals and MEDVIT_DICOMWEB_TIMEOUT
(seconds, default 60) each request.
"""

from __future__ import annotations

import argparse

from medvit.config import Params

HELP = "Pull DICOM instances from a PACS over DICOMweb (QIDO-RS / WADO-RS) into a raw folder."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", choices=("dicomweb",), help="where to pull from")
    parser.add_argument("--url", required=True,
                        help="DICOMweb base URL, e.g. https://pacs.example.org/dicom-web (no credentials in it)")
    parser.add_argument("--query", action="append", default=[], metavar="KEY=VALUE",
                        help="QIDO-RS filter, repeatable: a DICOM keyword or tag and its value (e.g. Modality=CR)")
    parser.add_argument("--out", required=True, help="raw folder for the Part 10 files, e.g. data/raw/pacs")


def run(args: argparse.Namespace, params: Params | None) -> int:
    from medvit.ingest.dicomweb import parse_query, pull_dicomweb, redact_url

    result = pull_dicomweb(args.url, parse_query(args.query), args.out)
    print(f"pull dicomweb: {result.matched} instance(s) match on {redact_url(args.url)}; "
          f"{result.downloaded} downloaded, {result.skipped} already in {args.out}")
    return 0
