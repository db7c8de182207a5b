"""Beam's pipeline options, checked before a pipeline is built.

The Beam commands (``beam-bottlenecks``, ``label_image.py --beam_output``)
hand every flag they do not know to Beam as a pipeline option.  Beam drops an
option that no options class declares with a log line, so a misspelt
``--outputdir`` would let a run exit 0 with its shards elsewhere, and it fails
on an unknown ``--runner`` with a traceback.  Both are refused here in one
sentence (exit 2), naming the closest known flag or the runners Beam knows.
"""
from __future__ import annotations

import argparse
import difflib

from ..errors import UserError


def check_pipeline_options(beam_args, own_flags=(), prog: str = "this command") -> None:
    """Refuse in one sentence (exit 2) a runner that Beam does not know and any argument that no Beam options class
    declares, before anything is built; ``own_flags`` (the command's own) are offered with Beam's for a typo."""
    from apache_beam.options import pipeline_options as beam_options
    from apache_beam.runners.runner import create_runner

    args = list(beam_args)
    runner = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    runner.add_argument("--runner")
    named = runner.parse_known_args(args)[0].runner
    if named is not None:
        known = beam_options.StandardOptions.KNOWN_RUNNER_NAMES
        try:
            create_runner(named)  # also imports the runner's module, which declares its own options
        except (ValueError, ImportError, AttributeError, TypeError) as exc:
            why = "" if isinstance(exc, ValueError) else f" ({str(exc).strip().rstrip('.') or type(exc).__name__})"
            raise UserError(f"--runner '{named}' is not a runner Beam can start here{why}: use one of "
                            f"{', '.join(known)}, or the full name of a PipelineRunner class.") from None
    # Every options class Beam has loaded, as PipelineOptions.get_all_options collects them (it drops the rest).
    parser = getattr(beam_options, "_BeamArgumentParser", argparse.ArgumentParser)(allow_abbrev=False)
    classes = {}
    for cls in beam_options.PipelineOptions.__subclasses__():
        classes.setdefault(str(cls), cls)
    for cls in classes.values():
        cls._add_argparse_args(parser)
    unknown = [arg for arg in parser.parse_known_args(args)[1] if arg != "--"]
    if not unknown:
        return
    flags = [opt for action in parser._actions for opt in action.option_strings if opt.startswith("--")]
    named = [arg.split("=", 1)[0] for arg in unknown]
    shown = ", ".join(f"'{arg}'" for arg in named)
    close = [match for arg in named if arg.startswith("--")
             for match in difflib.get_close_matches(arg, [*own_flags, *flags], n=1)]
    hint = f" (did you mean {', '.join(dict.fromkeys(close))}?)" if close else ""
    raise UserError(f"Unknown option {shown}: neither {prog} nor Beam's pipeline options know it, and Beam would "
                    f"drop it without a word{hint}.")
