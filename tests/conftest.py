"""Unit tests import aerie's pure helpers and modules directly.

module_utils/ and library/ hold plain Python files; Ansible ships them to
nodes, the tests import them from here without root and without Ansible's
module loader.
"""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for sub in ("module_utils", "library", "molecule"):
    sys.path.insert(0, str(REPO / sub))
