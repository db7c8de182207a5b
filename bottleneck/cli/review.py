"""``python -m bottleneck review`` and ``relabel``: act on what the last run found, on a page or from a CSV file.

Both find the last run's report as retrain.py places it (--report_dir, or
beside --output_graph) and change --image_dir only through the review's
journaled, undoable renames (bottleneck/review/).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..config.settings import ExportSettings, ReportSettings, RetrainConfig
from ..data.names import one_line
from ..errors import EXIT_FAILURE, EXIT_OK
from .guard import run_guarded, setup_logging

EPILOG = "Exit codes: 0 done, 2 usage or input error, 1 other failure{}, 130 stopped with Ctrl-C."


def _report_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image_dir", required=True, help="The folder of class folders that the run was over.")
    p.add_argument("--output_graph", type=Path, default=ExportSettings.output_graph,
                   help=f"As for retrain.py: the run's graph, beside which its report folder is found (default: "
                        f"{ExportSettings.output_graph})")
    p.add_argument("--report_dir", type=Path, default=ReportSettings.report_dir,
                   help="As for retrain.py: the run's report folder (default: <output_graph without .pb>_report)")


def _report_dir(args) -> Path:
    config = RetrainConfig(export=ExportSettings(output_graph=args.output_graph),
                           report=ReportSettings(report_dir=args.report_dir))
    return config.report_dir


def review_main(argv) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bottleneck review",
        description="Review what the last retrain.py run found (suspected label errors, duplicate and leakage "
                    "pairs, misclassified images) on a page served on this machine only: move each image to "
                    "another class, exclude it (to <image_dir>/.excluded/) or keep it as labelled. Every change "
                    "is journaled in <image_dir>/.retrain-review.jsonl and can be undone.",
        epilog=EPILOG.format(""))
    _report_flags(p)
    p.add_argument("--port", type=int, default=0, help="Port on 127.0.0.1 (default: a free one)")
    p.add_argument("--undo_all", action="store_true",
                   help="Take back every change of the latest review session (newest first), then stop.")
    args = p.parse_args(argv)
    setup_logging("INFO")

    def body():
        from ..review.moves import ImageFolder

        folder = ImageFolder(args.image_dir)
        if args.undo_all:
            return _undo_all(folder)
        from ..review.findings import read_last_run
        from ..review.journal import journal_path, read_changes
        from ..review.server import ReviewServer
        from ..review.session import Review

        review = Review(read_last_run(_report_dir(args), args.image_dir), folder)
        server = ReviewServer(review, port=args.port)
        print(f"Reviewing {len(review.findings)} finding(s) of the run reported in {one_line(_report_dir(args))}.")
        print(f"Open {server.url} in a browser; Ctrl-C stops.", flush=True)
        try:
            server.serve_forever()
        finally:
            server.server_close()
            made = sum(c.session == folder.session for c in read_changes(args.image_dir))
            if made:
                print(f"{made} change(s) journaled in {one_line(journal_path(args.image_dir))}; run retrain.py again "
                      f"to use them, or python -m bottleneck review --undo_all --image_dir {one_line(args.image_dir)} "
                      "to take them back.", flush=True)
        return EXIT_OK

    return run_guarded("review", body)


def _undo_all(folder) -> int:
    session, undone = folder.undo_session()
    if not undone:
        print("Nothing to undo: every change in the journal was already taken back (or there is none).")
        return EXIT_OK
    for change in undone:
        print(f"undid: {one_line(change.source)} -> {one_line(change.target)}" if change.source != change.target
              else f"undid: keep {one_line(change.source)}")
    print(f"Took back {len(undone)} change(s) of session {session}.")
    return EXIT_OK


def relabel_main(argv) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bottleneck relabel",
        description="Apply review decisions from a CSV file with the columns of the report's "
                    "suspected_label_errors.csv plus 'action': move (to the class in 'suggested'), exclude or keep. "
                    "The same rules and journal as the review page.",
        epilog=EPILOG.format(" or a decision refused"))
    p.add_argument("--decisions", required=True, help="The CSV file of decisions.")
    _report_flags(p)
    args = p.parse_args(argv)
    setup_logging("INFO")

    def body():
        import sys

        from ..review.decisions import apply_decisions, read_decisions
        from ..review.findings import read_last_run
        from ..review.journal import journal_path
        from ..review.moves import ImageFolder
        from ..review.session import Review

        folder = ImageFolder(args.image_dir)
        review = Review(read_last_run(_report_dir(args), args.image_dir), folder)
        outcomes = apply_decisions(read_decisions(args.decisions), review)
        for outcome in outcomes:
            if outcome.done:
                print(outcome.done)
            else:
                print(f"relabel: row {outcome.row} refused: {outcome.refused}", file=sys.stderr)
        refused = sum(o.done is None for o in outcomes)
        print(f"Applied {len(outcomes) - refused} of {len(outcomes)} decision(s)"
              + (f", {refused} refused" if refused else "") + f"; journal: {one_line(journal_path(args.image_dir))}.")
        return EXIT_FAILURE if refused else EXIT_OK

    return run_guarded("relabel", body)
