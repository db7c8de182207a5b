"""Keep as labelled, reaching the data checks: a disputed image that a review kept is not suggested again.

An image is left out of the suspected label errors while its content (digest)
and its label are those a review kept; moved to another class, or changed, it
can be suggested again.
"""
from __future__ import annotations

import logging

from ..data_checks.findings import Findings
from ..errors import UserError
from .journal import kept_as_labelled, read_changes

log = logging.getLogger("retrain")


def leave_out_kept(findings: Findings, image_dir) -> Findings:
    """``findings`` without the suspected label errors that a review of ``image_dir`` kept as labelled."""
    try:
        kept = kept_as_labelled(read_changes(image_dir))
    except UserError as exc:  # the review's journal is the review's business: the run goes on without it
        log.warning("%s Images kept as labelled may be suggested again.", exc)
        return findings
    if not kept:
        return findings
    digest_of = dict(zip(findings.images.paths, findings.images.digests))
    left = [e for e in findings.label_errors if (digest_of.get(e.path), e.label) not in kept]
    if len(left) < len(findings.label_errors):
        log.info("Left out %d suspected label error(s) that a review kept as labelled.",
                 len(findings.label_errors) - len(left))
    findings.label_errors = left
    return findings
