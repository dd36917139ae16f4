"""The security tests train the tiny model of tests/train (its trainkit) to get real in-stage checkpoints to attack."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
