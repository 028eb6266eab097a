"""DVC entry point of the zeroshot stage: `python pipelines/zeroshot.py --domain D [paths]`.

Same code path as `medvit zeroshot`; see medvit/stages/zeroshot.py.
"""

import sys

from medvit.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("zeroshot"))
