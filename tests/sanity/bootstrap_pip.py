"""Stand-in for the get-pip script ansible-test bootstraps its sanity venvs with (aerie-bootstrap-pip).

ansible-test creates each sanity venv without pip and downloads
get-pip-<version>.py from ci-files.testing.ansible.com to put pip in, a host
aerie's CI cannot reach (only PyPI is). `scripts/aerie sanity` installs this
file where ansible-test caches that script (~/.ansible/test/cache/) and fills
in PIP_CACHE_DIR. It does the same job from what is at hand: pip from the
interpreter's ensurepip, then the pip version ansible-test asked for from
PyPI. ansible-test passes no PIP_* variable on to pip, so the venv gets a
pip.conf naming the cache for the installs that follow.

Called as get-pip is: python get_pip_X.py [pip options] pip==X [--no-setuptools] [--no-wheel].
"""

import os
import subprocess
import sys

# Filled in by scripts/aerie sanity: where pip keeps its downloads.
PIP_CACHE_DIR = ""

GET_PIP_ONLY = {"--no-setuptools": "setuptools", "--no-wheel": "wheel"}


def main() -> None:
    if PIP_CACHE_DIR:
        with open(os.path.join(sys.prefix, "pip.conf"), "w", encoding="utf-8") as conf:
            conf.write(f"[global]\ncache-dir = {PIP_CACHE_DIR}\n")
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
    run = [sys.executable, "-m"]
    subprocess.run([*run, "ensurepip", "--upgrade"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([*run, "pip", "install", "--upgrade", *args], check=True)
    # ensurepip brings setuptools along; get-pip leaves out what it is told to.
    unwanted = [name for flag, name in GET_PIP_ONLY.items() if flag in sys.argv[1:]]
    if unwanted:
        subprocess.run([*run, "pip", "uninstall", "--yes", "--quiet", *unwanted], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
