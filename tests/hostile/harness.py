"""What the hostile sweeps share: running one scenario's command in its own session under a
timeout (the whole process group is killed at the timeout: a hang is an outcome, not a stuck
sweep), and whether this machine can mount a real tmpfs for full- and read-only-disk scenarios."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


def run_command(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> tuple[int | None, str, str]:
    """(exit status, or None when killed at the timeout; stdout; stderr) of ``argv``."""
    p = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         errors="backslashreplace", start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out, err
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        return None, out, err


def unshare_works() -> bool:
    """Whether ``unshare -rm`` gives this user a mount namespace with a tmpfs."""
    try:
        done = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                              capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0
