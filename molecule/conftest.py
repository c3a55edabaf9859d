"""Shared pytest setup for every scenario's testinfra tests.

pytest imports this file before any ``molecule/<scenario>/tests`` module, so
the helper module beside it becomes importable as ``aerie_testinfra``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
