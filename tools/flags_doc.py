"""Write docs/flags.md from the settings, so the page can never disagree with ``retrain.py --help``.

    python -m tools.flags_doc            # rewrite docs/flags.md
    python -m tools.flags_doc --check    # exit 1 if docs/flags.md is out of date (the test suite runs this)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bottleneck.cli.retrain import build_parser

PAGE = Path(__file__).resolve().parent.parent / "docs" / "flags.md"

INTRO = """# All flags of retrain.py

This page is generated from `bottleneck/config/settings.py` by `python -m tools.flags_doc`; `retrain.py --help`
prints the same text. The classic flags keep the classic script's names and defaults. Flags given
explicitly win over a `--preset`, which wins over the defaults.
"""


def render() -> str:
    parser = build_parser()
    lines = [INTRO]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if a.dest != "help"]
        if not actions:
            continue
        lines += [f"## {group.title[0].upper()}{group.title[1:]}", "", "| flag | meaning |", "| --- | --- |"]
        for action in actions:
            flag = action.option_strings[0]
            if action.choices:
                flag += " {" + ",".join(str(c) for c in action.choices) + "}"
            elif action.nargs != 0:
                flag += f" {action.metavar or action.dest.upper()}"
            lines.append(f"| `{flag}` | {action.help.replace('|', '/')} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only check that docs/flags.md is up to date")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        if PAGE.read_text(encoding="utf-8") != text:
            print(f"{PAGE} is out of date: run python -m tools.flags_doc", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
