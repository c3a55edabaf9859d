"""Unit tests import aerie's modules and helpers by their collection names.

pyproject.toml puts collections/ (where ansible_collections/aerie/grid links
back to this checkout) on pytest's path, so a test imports exactly what an
installed aerie.grid ships: ansible_collections.aerie.grid.plugins.*.
"""
