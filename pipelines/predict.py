"""DVC entry point of the predict stage: `python pipelines/predict.py --model DIR --thresholds FILE --input DIR --out DIR`.

Same code path as `medvit predict`; see medvit/stages/predict.py. In dvc.yaml it scores the sample's own
raw files with the fine-tuned (not yet registered) model: an example of what `medvit predict` writes.
"""

import sys

from medvit.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("predict"))
