"""Make sure the system programs the suite drives are present: mosquitto, chromium.

Run by ``make test`` before pytest. On a machine without them it installs the
Debian packages (the suite needs a real broker and a real browser); where that
is impossible it says what is missing and the tests that need it fail loudly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

NEEDED = {"mosquitto": "mosquitto", "chromium": "chromium"}
SEARCH = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]


def find(program: str) -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), *SEARCH])
    return shutil.which(program, path=path)


def main() -> int:
    missing = [pkg for prog, pkg in NEEDED.items() if find(prog) is None]
    if not missing:
        return 0
    print(f"installing system packages: {' '.join(missing)}", flush=True)
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        print(f"cannot install {missing}: run as root on Debian, or install them", file=sys.stderr)
        return 1
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([apt, "update", "-qq"], check=False, env=env)
    done = subprocess.run([apt, "install", "-y", "-qq", *missing], check=False, env=env)
    if done.returncode != 0:
        print(f"could not install {missing}", file=sys.stderr)
        return 1
    # mosquitto's package starts a system broker; the suite runs its own private ones.
    return 0


if __name__ == "__main__":
    sys.exit(main())
