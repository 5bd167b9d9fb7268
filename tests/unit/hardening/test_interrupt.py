"""Issue #33: Ctrl-C at any moment of the command line's start is exit 130 without a traceback.

A real SIGINT is sent at the N-th module import after the entry point (``defectlens.__main__``, the
console script's target) has started: while the command line is imported (the entry's own handler
exits at once), while the subcommands are registered and the arguments parsed, and while the command
imports its libraries (``main`` answers). Sending it at an import, not after a delay, makes every case
the same on a fast or a loaded machine.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.unit.hardening import corpus as C

pytestmark = pytest.mark.slow  # a child process per case

_CHILD = """
import os, signal, sys
import defectlens.__main__ as entry

N = int(sys.argv[1])


class InterruptAtImport:
    count = 0

    def find_spec(self, name, path=None, target=None):
        InterruptAtImport.count += 1
        if InterruptAtImport.count == N:
            os.write(2, b"SENT at " + name.encode() + b"\\n")
            os.kill(os.getpid(), signal.SIGINT)
        return None


sys.meta_path.insert(0, InterruptAtImport())
sys.exit(entry.run(sys.argv[2:]))
"""


#: import counts: during the command line's import, its subcommands', numpy's C modules (55: datetime), onnxruntime's
AT_IMPORT = [1, 2, 3, 5, 8, 13, 21, 34, 40, 45, 50, 55, 60, 70, 89, 110, 144, 180, 233, 300, 377, 610]


@pytest.mark.parametrize("n", AT_IMPORT)
def test_ctrl_c_at_the_nth_import_is_exit_130_without_a_traceback(n, bundle, tmp_path):
    folder = tmp_path / "parts"
    C.good_images(folder)
    argv = ["predict", str(folder), "--model", str(bundle), "--out", str(tmp_path / "out")]
    # as from a terminal: a suite started in the background (``make test &``) passes SIGINT on ignored, and Python
    # then installs no handler for it, so the child would never see the Ctrl-C this test sends
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(n), *argv], capture_output=True, text=True, timeout=300,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr, proc.stderr
    if "SENT" not in proc.stderr:  # the run needed fewer imports than n: it finished
        assert proc.returncode == 0, proc.stderr
        return
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "defectlens: interrupted"
