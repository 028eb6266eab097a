"""DVC entry point of the evaluate stage: `python pipelines/evaluate.py --domain D [paths]`.

Same code path as `medvit evaluate`; see medvit/stages/evaluate.py.
"""

import sys

from medvit.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("evaluate"))
