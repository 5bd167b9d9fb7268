"""The ``defectlens`` command line: thin adapters over the library's workflows.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and sets ``func``
to a function ``(args) -> int``. Heavy imports happen inside those functions, so
``defectlens --help`` is instant.

Exit codes (also in the README): 0 everything succeeded; 1 the command ran but some inputs failed
(error rows in a prediction CSV); 2 bad usage or bad input (a message names the file or value);
3 an internal error (one line on stderr, the traceback in a log file whose path it names);
4 the command ran, no input failed, but the model's gate flagged some frames for review
(``needs_review`` rows of ``predict``); 5 ``compare`` kept the champion (the challenger is not promoted);
130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import os
import signal
import sys
import threading

from defectlens.core.errors import DefectlensError
from defectlens.core.outputs import ENVIRONMENT_ERRNOS, os_reason
from defectlens.core.text import terminal_safe

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_NEEDS_REVIEW = 4
EXIT_KEEP_CHAMPION = 5

# Optional packages and the extra that installs each (pyproject.toml [project.optional-dependencies]).
_EXTRAS = {
    **dict.fromkeys(
        ("torch", "torchvision", "imagehash", "onnx", "onnxscript", "safetensors", "pytorch_grad_cam"), "train"
    ),
    # evaluate without torch; [train] has them too, and a training command misses torch first
    **dict.fromkeys(("sklearn", "scipy", "matplotlib"), "eval"),
    **dict.fromkeys(("efficientnet_lite_pytorch", "elpv_dataset"), "train"),
    **dict.fromkeys(("fastapi", "fastapi_offline", "uvicorn", "multipart", "prometheus_client"), "serve"),
    "openvino": "openvino",
    **dict.fromkeys(("watchdog", "paho", "asyncua", "pymodbus"), "line"),
    "cv2": "video",
    **dict.fromkeys(("harvesters", "genicam"), "camera"),
}

# Subcommand modules, in the order they appear in --help.
_COMMANDS = (
    "data", "train", "evaluate", "export", "bundle", "predict", "bench", "demo", "serve", "inspector", "line",
    "compare", "monitor",
)  # fmt: skip


class Parser(argparse.ArgumentParser):
    """argparse with "did you mean" for mistyped options and defaults shown where they exist."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def, override]
        parsed, extras = super().parse_known_args(args, namespace)
        unknown = [a.split("=", 1)[0] for a in extras if a.startswith("-")]
        if unknown:
            known = [o for action in self._all_actions() for o in action.option_strings]
            hints = []
            for option in unknown:
                close = difflib.get_close_matches(option, known, n=1, cutoff=0.6)
                hints.append(f"{option} (did you mean {close[0]}?)" if close else option)
            self.error(f"unrecognized arguments: {' '.join(hints)}")
        return parsed, extras

    def _all_actions(self) -> list[argparse.Action]:
        """This parser's actions and those of the subcommand parsers below it."""
        out = list(self._actions)
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    out += sub._all_actions() if isinstance(sub, Parser) else list(sub._actions)
        return out


class _Formatter(argparse.HelpFormatter):
    """Appends "(default: X)" to a flag's help when it has a real default that the help does not show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or "default" in text or action.default in (None, False, argparse.SUPPRESS, [], ""):
            return text
        if action.option_strings and action.nargs != 0:
            return f"{text} (default: %(default)s)"
        return text


class _Version(argparse.Action):
    """``--version``: the version and the installed runtimes, looked up only when asked (not on every start)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, nargs=0,
                         help="print the version, the Python and the installed runtimes, then exit")  # fmt: skip

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        from defectlens.core.machine import version_report

        print(version_report())
        parser.exit()


def get_args_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="defectlens",
        description="Visual inspection for manufacturing: import, train, evaluate, explain, deploy.",
        epilog="exit codes: 0 ok, 1 some inputs failed, 2 usage or input error, 3 internal error, "
        "4 some frames need review (the gate flagged them; none failed), 5 compare kept the champion",
    )
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"defectlens.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"defectlens.cli.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


#: Commands that run as a service or a window: their results do not go to standard output.
_NO_STDOUT = ("serve", "inspector")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    previous = _watch_interrupts()
    try:
        return _main(argv)
    except KeyboardInterrupt:  # while the subcommands are imported, or the arguments parsed
        return _interrupted()
    except Exception as exc:  # the same moments: a bug, or an import that an interrupt broke
        return _internal_error(exc, argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


#: Set when Ctrl-C arrives during :func:`main`: an exception it caused (a C extension's import that it
#: interrupted turns it into an ImportError) is then the interrupt, exit 130, not an internal error.
_SIGINT = threading.Event()


def _on_sigint(signum: int, frame: object) -> None:
    _SIGINT.set()
    raise KeyboardInterrupt


def _watch_interrupts() -> signal.Handlers | None:
    """Note every Ctrl-C from here on (Python's handler otherwise); returns the handler to restore."""
    _SIGINT.clear()
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return None  # an embedding program's own handler, or not the main thread's business
    try:
        return signal.signal(signal.SIGINT, _on_sigint)  # type: ignore[return-value]
    except ValueError:  # not the main thread
        return None


def _interrupted() -> int:
    print("defectlens: interrupted", file=sys.stderr)
    return EXIT_INTERRUPTED


def _main(argv: list[str] | None) -> int:
    _files_report_their_size_limit()
    if _stdout_closed(sys.argv[1:] if argv is None else argv):
        print(
            "defectlens: error: standard output is closed; the results would be lost: redirect it to a file "
            "or to /dev/null",
            file=sys.stderr,
        )
        return EXIT_USAGE
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        code = int(args.func(args) or 0)
        _flush_stdout()
        return code
    except DefectlensError as exc:
        print(f"defectlens: error: {terminal_safe(str(exc))}", file=sys.stderr)  # a path may hold escapes
        return exc.exit_code
    except KeyboardInterrupt:
        return _interrupted()
    except BrokenPipeError:
        # The reader went away (`defectlens ... | head`): stop quietly, as head expects.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except StdoutError as exc:
        print(f"defectlens: error: standard output: cannot write: {os_reason(exc.error)}", file=sys.stderr)
        return EXIT_USAGE
    except ModuleNotFoundError as exc:
        extra = _EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None:
            return _internal_error(exc, argv)
        print(
            f"defectlens: error: this needs the {exc.name!r} package, which is not installed: "
            f"pip install 'defectlens[{extra}]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRNOS:
            return _internal_error(exc, argv)
        # every file defectlens writes names itself (core.outputs); an OSError without a name is a stream
        where = exc.filename if exc.filename is not None else "standard output"
        print(f"defectlens: error: {terminal_safe(str(where))}: {os_reason(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # a bug: one line for the user, the traceback in a file
        return _internal_error(exc, argv)


def _stdout_closed(argv: list[str]) -> bool:
    """True when the process started with standard output closed (``>&-``) and the command prints its
    results there. File descriptor 1 then gets /dev/null either way, so no output file the command
    opens can take its number and receive what is meant for the terminal."""
    if sys.stdout is not None:
        return False
    fd = os.open(os.devnull, os.O_WRONLY)
    if fd != 1:
        os.dup2(fd, 1)
        os.close(fd)
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115  # lives as long as the process
    return not argv or argv[0] not in _NO_STDOUT


class StdoutError(Exception):
    """Writing the results to standard output failed (a full disk, /dev/full, an I/O error)."""

    def __init__(self, error: OSError):
        super().__init__(str(error))
        self.error = error


def _flush_stdout() -> None:
    """Flush the results now, so a failure to write them is reported (at exit it would be lost)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        with contextlib.suppress(OSError):  # drop what could not be written: exit must not retry it
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise StdoutError(exc) from None


def _files_report_their_size_limit() -> None:
    """A file-size limit (``ulimit -f``) makes a write fail with EFBIG, reported as exit 2 with the file's
    name, instead of SIGXFSZ killing the process with half a row on disk."""
    sigxfsz = getattr(signal, "SIGXFSZ", None)
    if sigxfsz is not None:
        with contextlib.suppress(ValueError, OSError):  # not the main thread: leave signals alone
            signal.signal(sigxfsz, signal.SIG_IGN)


def _internal_error(exc: Exception, argv: list[str] | None) -> int:
    if _SIGINT.is_set():
        return _interrupted()
    import tempfile
    import time
    import traceback
    from pathlib import Path

    folder = Path(os.environ.get("DEFECTLENS_LOG_DIR") or Path(tempfile.gettempdir()) / "defectlens-logs")
    text = "".join(traceback.format_exception(exc))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        log = folder / f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        log.write_text(f"argv: {argv if argv is not None else sys.argv[1:]}\n{text}", encoding="utf-8")
        where = f"traceback in {log}"
    except OSError:
        where = "traceback:\n" + text
    text = terminal_safe(f"{type(exc).__name__}: {exc}")
    print(f"defectlens: internal error: {text} ({where}); please report it", file=sys.stderr)
    return EXIT_INTERNAL
