"""``python -m bottleneck prepare-model`` and ``beam-bottlenecks``: the package's own commands.

(retrain.py and label_image.py are the other two.)
"""
import sys

from .cli.commands import COMMANDS
from .cli.guard import exit_skipping_teardown

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(f"usage: python -m bottleneck {{{','.join(COMMANDS)}}} [options]", file=sys.stderr)
        sys.exit(2)
    exit_skipping_teardown(COMMANDS[sys.argv[1]](sys.argv[2:]))
