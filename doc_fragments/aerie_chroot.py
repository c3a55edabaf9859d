"""Options every chroot_* module shares: which tree, and where the trees live."""


class ModuleDocFragment:
    # The modules extend their DOCUMENTATION with this (extends_documentation_fragment: aerie_chroot).
    DOCUMENTATION = r"""
options:
  name:
    description: Name of the tree (letters, digits, C(_)); its stable path is C(ROOT/NAME).
    type: str
    required: true
  root:
    description: Directory holding the trees (C(ROOT/NAME-vVERSION)) and their stable links.
    type: path
    default: /chroot
"""
