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
