"""``python -m defectlens`` and the ``defectlens`` console script (also what ``torchrun -m defectlens
train`` runs).

Ctrl-C can come while the command line is still being imported (argparse, rich, numpy), before
:func:`defectlens.cli.main` can turn it into exit code 130. Until then a handler of our own ends the
process at once with 130 and one line, never a KeyboardInterrupt traceback: nothing has been written
yet, so there is nothing to clean up. Once the command line is imported, Python's own handler is back
and ``main`` answers Ctrl-C (every row already decided stays written).
"""

import os
import signal


def _interrupted_at_start(signum: int, frame: object) -> None:
    os.write(2, b"defectlens: interrupted\n")
    os._exit(130)


#: Python's handler, put back once the command line is imported. The early handler is installed here,
#: at import, the first moment this module runs; a program embedding defectlens with a handler of its
#: own keeps it.
_PREVIOUS = signal.getsignal(signal.SIGINT)
if _PREVIOUS is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_at_start)


def run(argv: list[str] | None = None) -> int:
    """Import the command line under the early handler, then run it; returns the exit code."""
    try:
        from defectlens.cli import main
    except KeyboardInterrupt:  # raised during an import by other means than SIGINT (the handler exits)
        os.write(2, b"defectlens: interrupted\n")
        return 130
    finally:
        if signal.getsignal(signal.SIGINT) is _interrupted_at_start:
            signal.signal(signal.SIGINT, _PREVIOUS)
    return main(argv)


if __name__ == "__main__":
    raise SystemExit(run())
