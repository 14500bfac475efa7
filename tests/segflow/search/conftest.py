"""NNI's dispatcher and trial processes import the test helpers by name, and so does the driver."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
