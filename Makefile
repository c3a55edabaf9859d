# Convenience targets; scripts/aerie is the task runner (the README's two
# commands work on a machine without make).
.PHONY: lab test lint unit molecule bench lab-down lock
lab test lint unit molecule bench lab-down lock:
	./scripts/aerie $@
