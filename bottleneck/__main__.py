"""``python -m bottleneck prepare-model``: the package's own commands besides retrain.py and label_image.py."""
import sys

from .cli import prepare_model_main

COMMANDS = {"prepare-model": prepare_model_main}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(f"usage: python -m bottleneck {{{','.join(COMMANDS)}}} [options]", file=sys.stderr)
        sys.exit(2)
    sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]))
