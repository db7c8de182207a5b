"""A review of the last run: its findings, where their images are now, and the changes asked for, by finding.

Whoever asks (the page, or a CSV of decisions) names a finding and one of its
images, never a path: the image's file is the run's record of it, followed
through the journal to where a review has since put it.  What each finding's
state is (open, moved, excluded, kept) is the journal replayed, so a review
stopped and started again picks up where it was.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..data.names import one_line
from ..data.walk import label_for_folder
from . import journal
from .findings import Finding, LastRun
from .journal import EXCLUDED_FOLDER, Change
from .moves import ImageFolder, Refused
from .record import RecordedImage


@dataclass
class Place:
    """Where one image of the run is now, and the last change that put it there (None: as the run saw it)."""

    relative: str
    change: Change | None = None


class Review:
    def __init__(self, last_run: LastRun, folder: ImageFolder):
        self.run, self.folder = last_run, folder
        self.findings = {f.id: f for f in last_run.findings}

    # ---------------------------------------------------------------- state

    def places(self, images: list[RecordedImage] | None = None) -> tuple[dict[str, Place], dict[frozenset, Change]]:
        """Where each image is now (by its place in the run) and the pairs kept, from the journal."""
        images = images if images is not None else [im for f in self.run.findings for im in f.images]
        places = {im.relative: Place(im.relative) for im in images}
        digests = {im.relative: im.digest for im in images}
        at = {im.relative: im.relative for im in images}  # where each image is now -> its place in the run
        pairs = {}
        for change in journal.live(journal.read_changes(self.folder.root)):
            if change.pair is not None:
                pairs[frozenset((change.digest, change.pair))] = change
                continue
            origin = at.get(change.source)
            if origin is None or digests[origin] != change.digest:
                continue
            places[origin] = Place(change.target, change)
            if change.target != change.source:
                del at[change.source]
                at[change.target] = origin
        return places, pairs

    def state(self) -> dict:
        """What the page shows: the classes, every finding with its images' places and decision, how many are left."""
        places, pairs = self.places()
        cards = []
        for finding in self.run.findings:
            change = self._decision(finding, places, pairs)
            cards.append({
                "id": finding.id, "kind": finding.kind, "suggested": finding.suggested, "detail": finding.detail,
                "images": [{"name": im.name, "folder": im.folder, "label": im.label, "set": im.set,
                            "predicted": im.predicted, "now": places[im.relative].relative} for im in finding.images],
                "decision": None if change is None else _describe(change),
            })
        classes = sorted(set(self.run.folder_of.values()) | set(self.folder.class_folders()))
        return {"classes": [{"folder": c, "label": label_for_folder(c)} for c in classes],
                "suggested_folders": self.run.folder_of, "findings": cards,
                "left": sum(card["decision"] is None for card in cards)}

    def _decision(self, finding: Finding, places, pairs) -> Change | None:
        """The change that decided ``finding`` (the latest of its images' and its pair's), or None while open."""
        changes = [places[im.relative].change for im in finding.images]
        if finding.kind == "duplicate":  # an image of the pair kept as labelled leaves the pair open
            changes = [c for c in changes if c is not None and c.action != "keep"]
            changes.append(pairs.get(frozenset(im.digest for im in finding.images)))
        changes = [c for c in changes if c is not None]
        return max(changes, key=lambda c: (c.time, c.id)) if changes else None

    # ---------------------------------------------------------------- changes

    def image(self, finding_id, side) -> RecordedImage:
        finding = self.findings.get(finding_id) if isinstance(finding_id, int) else None
        if finding is None or not isinstance(side, int) or not 0 <= side < len(finding.images):
            raise Refused("No such finding in the last run.")
        return finding.images[side]

    def act(self, finding_id, side, action: str, folder: str | None = None) -> Change:
        """``move`` (to class ``folder``, or the suggested one), ``exclude`` or ``keep`` one image of a finding."""
        image = self.image(finding_id, side)
        finding = self.findings[finding_id]
        places, pairs = self.places(finding.images)
        if self._decision(finding, places, pairs) is not None:
            raise Refused("This finding was already decided; undo that first.")
        if action == "move" and not folder:
            folder = self.run.folder_of.get(finding.suggested or "")
        pair = finding.images[1 - side].digest if finding.kind == "duplicate" and action == "keep" else None
        return self.change(image, action, folder, pair=pair)

    def change(self, image: RecordedImage, action: str, folder: str | None = None, pair: str | None = None) -> Change:
        """Move (to class ``folder``), exclude or keep one image of the run, from where the run saw it."""
        place = self.places([image])[0][image.relative]
        if place.change is not None and not (action == "keep" and place.change.action == "keep"):
            raise Refused(f"{one_line(image.relative)} was already changed by a review since the run "
                          f"({_describe(place.change)['text']}); undo that first.")
        if action == "move":
            if not folder:
                raise Refused("Name the class to move the image to.")
            return self.folder.move(image.relative, image.digest, image.label, folder)
        if action == "exclude":
            return self.folder.exclude(image.relative, image.digest, image.label)
        if action == "keep":
            return self.folder.keep(image.relative, image.digest, image.label, pair=pair)
        raise Refused(f"Unknown action '{one_line(action)}': use move, exclude or keep.")

    def undo(self, finding_id) -> Change:
        """Take back the change that decided a finding."""
        finding = self.findings.get(finding_id) if isinstance(finding_id, int) else None
        if finding is None:
            raise Refused("No such finding in the last run.")
        places, pairs = self.places(finding.images)
        change = self._decision(finding, places, pairs)
        if change is None:
            raise Refused("Nothing to undo for this finding.")
        return self.folder.undo(change.id)

    def path_of(self, finding_id, side):
        """The file of one image of a finding, where it is now (checked to be a regular file inside the folder)."""
        image = self.image(finding_id, side)
        places, _pairs = self.places([image])
        return self.folder.path_of(places[image.relative].relative)


def _describe(change: Change) -> dict:
    if change.action == "keep":
        text = "kept as they are" if change.pair else f"kept as {change.label}"
    elif change.target.split("/")[0] == EXCLUDED_FOLDER:
        text = "excluded"
    else:
        text = f"moved to {label_for_folder(change.target.split('/')[0])}"
    return {"action": change.action, "text": text, "id": change.id, "session": change.session}
