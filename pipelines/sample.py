"""DVC entry point of the sample stage: `python pipelines/sample.py --domain D [paths]`.

Same code path as `medvit sample`; see medvit/stages/sample.py.
"""

import sys

from medvit.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("sample"))
