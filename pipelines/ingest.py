"""DVC entry point of the ingest stage: `python pipelines/ingest.py --domain D [paths]`.

Same code path as `medvit ingest`; see medvit/stages/ingest.py.
"""

import sys

from medvit.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("ingest"))
