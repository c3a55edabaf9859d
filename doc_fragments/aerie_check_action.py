"""Attributes of aerie's check actions: action plugins that fail before any change and change nothing."""


class ModuleDocFragment:
    # aerie_role_vars and aerie_python_floor extend their DOCUMENTATION with
    # this (extends_documentation_fragment: aerie.grid.aerie_check_action);
    # each still names its own platform.
    DOCUMENTATION = r"""
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details: Changes nothing, so it runs the same in check mode.
  diff_mode:
    support: N/A
    details: Changes nothing, so there is no diff.
"""
