"""The CrewAI venv's tests import the examples' shared setup, as the main suite does."""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "python"))
