# aerie: record a check-mode run as JSON lines for scripts/drift-check.
# SPDX-License-Identifier: Apache-2.0
# ruff: noqa: E402 - ansible-test's validate-modules wants the imports below DOCUMENTATION.
"""Callback plugin writing one JSON object per event to $AERIE_DRIFT_EVENTS."""

from __future__ import annotations

DOCUMENTATION = """
name: aerie_drift
type: notification
short_description: Record task results and per-host progress as JSON lines
description:
  - Used by scripts/drift-check. Appends one JSON object per line to the file
    named by the environment variable C(AERIE_DRIFT_EVENTS) - C(start) (all
    hosts of the run), C(result) (host, play, role, task, status, diff text,
    and for a service task the unit's state before and the state declared),
    C(progress) (a host's tasks checked and changes so far, every 25 tasks of
    a host or at its first task after 30 seconds without one), C(host_done)
    (a host has no play left, with the same counts) and C(stats) (the play
    recap).
  - Results of tasks with C(no_log) arrive censored from Ansible itself; this
    plugin records neither their diff nor their message even if they did not.
requirements:
  - enable in callbacks_enabled (drift-check does so)
options: {}
"""

import json
import os
import time

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.callback import CallbackBase

# A progress event per host every this many tasks, or sooner once this long
# has passed since the last one: enough to show a long play moving, few
# enough lines for thousands of hosts.
PROGRESS_TASKS = 25
PROGRESS_SECONDS = 30.0
SERVICE_MODULES = {"service", "systemd", "systemd_service"}
HIDDEN = "(hidden: no_log)"


def service_state(task_args: dict, result: dict) -> dict:
    """The unit's state before (from systemd's ``status``, when reported) and the state declared."""
    args = dict(task_args)
    args.update((result.get("invocation") or {}).get("module_args") or {})
    status = result.get("status") if isinstance(result.get("status"), dict) else {}
    state = {"name": args.get("name") or result.get("name"), "state": args.get("state"),
             "enabled": args.get("enabled"), "masked": args.get("masked"),
             "active": status.get("ActiveState"), "unit_file": status.get("UnitFileState")}
    for key in ("enabled", "masked"):
        # The module's own arguments are booleans already; the task's may still read "yes".
        if isinstance(state[key], str):
            try:
                state[key] = boolean(state[key], strict=True)
            except TypeError:
                state[key] = None
    return {k: v for k, v in state.items() if v is not None}


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "aerie_drift"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        path = os.environ.get("AERIE_DRIFT_EVENTS")
        self._out = open(path, "a", buffering=1, encoding="utf-8") if path else None  # noqa: SIM115
        self._plays: list = []
        self._play_index = -1
        self._last_play_of: dict[str, int] = {}
        self._done: set[str] = set()
        self._play_name = ""
        # host -> [tasks, changed, tasks at the last progress event, its time]
        self._counts: dict[str, list] = {}

    def _emit(self, **event) -> None:
        if self._out is not None:
            self._out.write(json.dumps(event, sort_keys=True) + "\n")

    # -- progress ---------------------------------------------------------
    def v2_playbook_on_start(self, playbook) -> None:
        self._plays = playbook.get_plays()

    def v2_playbook_on_play_start(self, play) -> None:
        if self._play_index < 0:
            # First play: resolve every play's hosts once (the --limit applies),
            # so a host counts as finished after the last play that targets it.
            inventory = play.get_variable_manager()._inventory
            for index, each in enumerate(self._plays):
                for host in inventory.get_hosts(each.hosts):
                    self._last_play_of[host.name] = index
            self._emit(event="start", hosts=sorted(self._last_play_of))
        else:
            self._finish_play(self._play_index)
        self._play_index += 1
        self._play_name = play.get_name()

    def _finish_play(self, index: int) -> None:
        for host, last in sorted(self._last_play_of.items()):
            if last <= index and host not in self._done:
                self._done.add(host)
                tasks, changed = self._counts.get(host, [0, 0])[:2]
                self._emit(event="host_done", host=host, tasks=tasks, changed=changed)

    def _count(self, host: str, changed: bool) -> None:
        now = time.monotonic()
        c = self._counts.setdefault(host, [0, 0, 0, now])
        c[0] += 1
        c[1] += changed
        if c[0] - c[2] >= PROGRESS_TASKS or now - c[3] >= PROGRESS_SECONDS:
            c[2], c[3] = c[0], now
            self._emit(event="progress", host=host, tasks=c[0], changed=c[1])

    # -- results ----------------------------------------------------------
    def _record(self, result, status: str) -> None:
        task = result.task
        role = task._role.get_name(include_role_fqcn=False) if task._role else ""
        res = result.result
        name = task.get_name()
        if role and name.startswith(f"{role} : "):
            name = name[len(role) + 3 :]
        event = {"event": "result", "host": result.host.get_name(), "play": self._play_name, "role": role,
                 "task": name, "status": status, "diff": "", "msg": ""}
        # Ansible censors no_log results before callbacks see them; not
        # relying on that alone keeps a secret out of a report kept for weeks.
        if task.no_log is True or res.get("_ansible_no_log") or "censored" in res:
            event["msg"] = HIDDEN
        elif status == "changed":
            # A looped task carries its items' diffs in "results".
            parts = [res] + [r for r in res.get("results", []) if isinstance(r, dict) and r.get("changed")]
            event["diff"] = "".join(self._get_diff(p["diff"]) for p in parts if p.get("diff"))
            action = (task.resolved_action or task.action or "").rsplit(".", 1)[-1]
            if action in SERVICE_MODULES:
                # service/systemd report no diff; what they saw is in the result.
                event["services"] = [service_state(task.args, p) for p in parts[1:] or parts]
        else:
            event["msg"] = str(res.get("msg") or res.get("stderr") or res.get("reason") or "")[:2000]
        self._emit(**event)

    def v2_runner_on_ok(self, result) -> None:
        changed = bool(result.result.get("changed", False))
        self._count(result.host.get_name(), changed)
        if changed:
            self._record(result, "changed")

    def v2_runner_on_failed(self, result, ignore_errors: bool = False) -> None:
        self._count(result.host.get_name(), False)
        if not ignore_errors:
            self._record(result, "failed")

    def v2_runner_on_skipped(self, result) -> None:
        self._count(result.host.get_name(), False)

    def v2_runner_on_unreachable(self, result) -> None:
        self._count(result.host.get_name(), False)
        self._record(result, "unreachable")

    def v2_playbook_on_stats(self, stats) -> None:
        self._finish_play(len(self._plays))
        summary = {}
        for host in sorted(stats.processed):
            s = stats.summarize(host)
            summary[host] = {k: s[k] for k in ("ok", "changed", "failures", "unreachable", "skipped")}
        self._emit(event="stats", hosts=summary)
        if self._out is not None:
            self._out.close()
            self._out = None
