"""Validate an HTCondor configuration with one config.d fragment replaced.

Pure helpers (stdlib only) behind the ``condor_config_fragment`` module: stage
a temporary copy of the node's config.d with the candidate fragment in place,
write a wrapper root config that includes the node's real root config and
points LOCAL_CONFIG_DIR at the copy, and read the verdict of HTCondor's own
parser (``condor_config_val`` on an HTCondor node, otherwise the ``htcondor2``
bindings in a child process: a configuration error makes that library print
the reason on stderr and exit(1), it raises no Python exception).
"""

from __future__ import annotations

import json
import os
import re
import shutil

from ansible_collections.aerie.grid.plugins.module_utils.aerie_core import AerieError

# Child program for the htcondor2 route. The configuration is read at import
# time, from the file CONDOR_CONFIG names; on error the import never returns.
# param[] converts knobs of a known type (SINGULARITY_JOB comes back as the
# bool it evaluates to), so values are read as text through a scratch macro.
HTCONDOR2_PROBE = """
import json, sys
import htcondor2
def text(name):
    if htcondor2.param.get(name) is None:
        return None
    htcondor2.param["AERIE_PROBE_TEXT"] = "$(" + name + ")"
    return htcondor2.param.get("AERIE_PROBE_TEXT")
print(json.dumps({n: text(n) for n in json.loads(sys.argv[1])}))
"""

# Discovery pass: read the root config without any file of LOCAL_CONFIG_DIR
# (the parser skips files whose names match this expression), so that a broken
# fragment cannot hide where the fragments live.
SKIP_EVERY_FILE = "LOCAL_CONFIG_DIR_EXCLUDE_REGEXP = ^.*$"


class ValidationError(AerieError):
    """The configuration cannot be validated as asked (not a parser verdict)."""


def split_dirs(value: str | None) -> list[str]:
    """LOCAL_CONFIG_DIR is a list separated by commas and/or spaces."""
    return [d for d in re.split(r"[,\s]+", value or "") if d]


def _norm(path: str) -> str:
    return os.path.normpath(path)


def discovery_wrapper(root_config: str) -> str:
    """Root config for the pass that only asks where config.d lives."""
    return f"include : {root_config}\n{SKIP_EVERY_FILE}\n"


def validation_wrapper(root_config: str, dirs: list[str], config_dir: str, staged_dir: str) -> str:
    """Root config: the node's own, with ``config_dir`` swapped for ``staged_dir``.

    Every other directory of LOCAL_CONFIG_DIR stays in its place, so the
    fragments load in the order the daemons would load them.
    """
    if _norm(config_dir) not in [_norm(d) for d in dirs]:
        raise ValidationError(
            f"{config_dir} is not in LOCAL_CONFIG_DIR ({', '.join(dirs) or 'unset'}) of {root_config}: "
            "HTCondor would never read a fragment there"
        )
    swapped = [staged_dir if _norm(d) == _norm(config_dir) else d for d in dirs]
    return f"include : {root_config}\nLOCAL_CONFIG_DIR = {', '.join(swapped)}\n"


def stage_config_dir(config_dir: str, staged_dir: str, name: str, content: str | None) -> None:
    """Copy the regular files of ``config_dir`` to ``staged_dir``; put ``content`` as ``name``.

    ``content`` None stages the directory without that file (removal). A
    missing ``config_dir`` stages as empty (a fresh node in check mode).
    """
    os.makedirs(staged_dir, exist_ok=True)
    if os.path.isdir(config_dir):
        for entry in sorted(os.listdir(config_dir)):
            src = os.path.join(config_dir, entry)
            if entry != name and os.path.isfile(src):
                shutil.copyfile(src, os.path.join(staged_dir, entry))
    if content is not None:
        with open(os.path.join(staged_dir, name), "w", encoding="utf-8") as handle:
            handle.write(content)


def parser_message(stderr: str, stdout: str, staged_dir: str, config_dir: str) -> str:
    """The parser's complaint, naming the real config.d instead of the staged copy."""
    text = (stderr or "").strip() or (stdout or "").strip() or "no message from the parser"
    return text.replace(staged_dir.rstrip("/"), config_dir.rstrip("/"))


def parse_probe_output(stdout: str) -> dict:
    """The JSON line the htcondor2 probe prints last."""
    lines = [line for line in (stdout or "").splitlines() if line.strip()]
    if not lines:
        raise ValidationError("the htcondor2 probe printed nothing")
    try:
        return json.loads(lines[-1])
    except ValueError as exc:
        raise ValidationError(f"unexpected output from the htcondor2 probe: {lines[-1]!r}") from exc


def htcondor2_command(python: str, names: list[str]) -> list[str]:
    return [python, "-c", HTCONDOR2_PROBE, json.dumps(sorted(set(names)))]


def condor_config_val_commands(binary: str, names: list[str]) -> list[list[str]]:
    """``-dump`` reads (and so validates) everything; then one query per knob."""
    return [[binary, "-dump"]] + [[binary, name] for name in sorted(set(names))]


def condor_config_val_value(rc: int, stdout: str) -> str | None:
    """condor_config_val prints the value, or exits 1 with 'Not defined: NAME'."""
    if rc != 0:
        return None
    return stdout.rstrip("\n")


class Rejected(AerieError):
    """HTCondor's parser refused the configuration; the message is its own."""


def validate(run, validator: str, program: str, root_config: str, config_dir: str, name: str,
             content: str | None, workdir: str, names: list[str]) -> dict:
    """Load the whole configuration with ``name`` set to ``content`` (None: removed).

    ``run(argv, env) -> (rc, stdout, stderr)`` runs a command with extra
    environment; ``validator`` is ``condor_config_val`` or ``htcondor2`` and
    ``program`` the condor_config_val binary or the Python that has htcondor2.
    Returns the expanded values of ``names`` (None when undefined); raises
    Rejected with the parser's message, ValidationError when it cannot ask.
    """
    if not os.path.isfile(root_config):
        # htcondor2 silently falls back to built-in defaults without one.
        raise ValidationError(f"root config {root_config} does not exist")

    def ask(wrapper_text: str, tag: str, knobs: list[str]) -> dict:
        wrapper = os.path.join(workdir, f"condor_config.{tag}")
        with open(wrapper, "w", encoding="utf-8") as handle:
            handle.write(wrapper_text)
        env = {"CONDOR_CONFIG": wrapper}
        if validator == "htcondor2":
            rc, out, err = run(htcondor2_command(program, knobs), env)
            if rc != 0:
                raise Rejected(parser_message(err, out, staged, config_dir))
            return parse_probe_output(out)
        values = {}
        for argv in condor_config_val_commands(program, knobs):
            rc, out, err = run(argv, env)
            if argv[1] == "-dump":
                if rc != 0:
                    raise Rejected(parser_message(err, out, staged, config_dir))
            else:
                values[argv[1]] = condor_config_val_value(rc, out)
        return values

    staged = os.path.join(workdir, "config.d")
    dirs = split_dirs(ask(discovery_wrapper(root_config), "discover", ["LOCAL_CONFIG_DIR"])["LOCAL_CONFIG_DIR"])
    wrapper_text = validation_wrapper(root_config, dirs, config_dir, staged)
    stage_config_dir(config_dir, staged, name, content)
    return ask(wrapper_text, "validate", list(names) or ["DAEMON_LIST"])
