"""Errors a user can cause, and the exit codes the tools document.

Anything raised as ``UserError`` is reported as one sentence on stderr and the
process exits with its code; anything else is a programming error and keeps
its traceback.
"""

EXIT_OK = 0
EXIT_FAILURE = 1  # something went wrong that the user did not cause (or a failed quality gate)
EXIT_USAGE = 2  # bad flags, missing or unusable input, as argparse does


class UserError(Exception):
    """A problem with the user's input or environment, explained in one sentence."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE):
        super().__init__(message)
        self.exit_code = exit_code


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into the same unwinding as Ctrl-C so that temporary files are removed."""

    exit_code = 143  # 128 + SIGTERM, what a shell reports for a process killed by it


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message (its type's name when it has none), for one-sentence
    errors: libraries' messages run over many lines, and the first says what went wrong."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def last_line(output: str) -> str:
    """The last non-empty line of a tool's output (pip's, say), where the reason it failed stands."""
    lines = [line.strip() for line in (output or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
