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
    hosts of the run), C(result) (host, play, role, task, status, diff text),
    C(host_done) (a host has no play left) and C(stats) (the play recap).
  - Results of tasks with C(no_log) arrive censored from Ansible itself; this
    plugin never sees their values.
requirements:
  - enable in callbacks_enabled (drift-check does so)
options: {}
"""

import json
import os

from ansible.plugins.callback import CallbackBase


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
                self._emit(event="host_done", host=host)

    # -- results ----------------------------------------------------------
    def _record(self, result, status: str) -> None:
        task = result._task
        role = task._role.get_name(include_role_fqcn=False) if task._role else ""
        res = result._result
        name = task.get_name()
        if role and name.startswith(f"{role} : "):
            name = name[len(role) + 3 :]
        diff_text = ""
        if status == "changed":
            # A looped task carries its items' diffs in "results".
            parts = [res] + [r for r in res.get("results", []) if isinstance(r, dict) and r.get("changed")]
            diff_text = "".join(self._get_diff(p["diff"]) for p in parts if p.get("diff"))
        msg = ""
        if status in ("failed", "unreachable"):
            msg = str(res.get("msg") or res.get("stderr") or res.get("reason") or "")[:2000]
        self._emit(
            event="result",
            host=result._host.get_name(),
            play=self._play_name,
            role=role,
            task=name,
            status=status,
            diff=diff_text,
            msg=msg,
        )

    def v2_runner_on_ok(self, result) -> None:
        changed = result._result.get("changed", False)
        if changed:
            self._record(result, "changed")

    def v2_runner_on_failed(self, result, ignore_errors: bool = False) -> None:
        if not ignore_errors:
            self._record(result, "failed")

    def v2_runner_on_unreachable(self, result) -> None:
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
