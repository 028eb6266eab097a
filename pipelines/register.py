"""DVC entry point of the register stage: `python pipelines/register.py --domain D [paths]`.

Same code path as `medvit register`; see medvit/stages/register.py.
"""

import sys

from medvit.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("register"))
