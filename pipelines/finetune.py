"""DVC entry point of the finetune stage: `python pipelines/finetune.py --domain D [paths]`.

Same code path as `medvit finetune`; see medvit/stages/finetune.py.
"""

import sys

from medvit.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("finetune"))
