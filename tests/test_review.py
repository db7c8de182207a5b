"""The review loop without a browser: relabel from a CSV file, the journal and undo, the rules every change obeys,
the server's refusals, and the re-run that computes nothing for the images moved."""
from __future__ import annotations

import csv
import http.client
import json
import os
import shutil
import threading
from pathlib import Path

import pytest
from helpers import CLASS_COLOURS, make_dataset, retrain_args, write_photo

from bottleneck.cli.retrain import retrain_main
from bottleneck.cli.review import relabel_main, review_main
from bottleneck.review import journal
from bottleneck.review.findings import read_last_run
from bottleneck.review.moves import ImageFolder, Refused, rename_no_replace
from bottleneck.review.record import RECORD_FILE, read_record
from bottleneck.review.server import TOKEN_HEADER, ReviewServer
from bottleneck.review.session import Review

PLANTED = ("red_0.jpg", "red_1.jpg", "red_2.jpg")  # red photos filed as blue


def plant(tmp: Path, tiny_module: Path, planted=PLANTED) -> tuple[Path, Path]:
    """Three classes with red photos filed as blue (``planted``) and a copy of a green photo filed as red, retrained
    once: (image folder, report folder)."""
    images = make_dataset(tmp / "images", {"red": 30, "green": 30, "blue": 30})
    for k, name in enumerate(planted):
        write_photo(images / "blue" / name, CLASS_COLOURS["red"], seed=7000 + k)
    shutil.copy(images / "green" / "img_002.jpg", images / "red" / "green_copy.jpg")
    assert retrain(tmp, images, tiny_module) == 0
    return images, tmp / "out" / "graph_report"


def retrain(tmp: Path, images: Path, tiny_module: Path) -> int:
    return retrain_main(retrain_args(tmp, images, tiny_module, "--validation_percentage=20"))


def suspects(report: Path) -> list[str]:
    with open(report / "suspected_label_errors.csv", newline="", encoding="utf-8") as f:
        return [Path(row["path"]).relative_to(report.parent.parent / "images").as_posix() for row in csv.DictReader(f)]


def changes(images: Path) -> list[dict]:
    return [json.loads(line) for line in (images / journal.JOURNAL_FILE).read_text().splitlines()]


@pytest.fixture
def planted(tmp_path, tiny_module):
    images, report = plant(tmp_path, tiny_module)
    return tmp_path, images, report


def test_the_run_records_its_images_and_finds_the_planted_faults(planted):
    _tmp, images, report = planted
    record = read_record(report)
    assert record.image_dir == str(images.resolve())
    assert len(record.images) == 94 and {im.relative for im in record.images} >= {f"blue/{n}" for n in PLANTED}
    held_out = [im for im in record.images if im.set != "training"]
    assert held_out and all(im.predicted for im in held_out)
    assert not any(im.predicted for im in record.images if im.set == "training")
    assert set(suspects(report)) >= {f"blue/{n}" for n in PLANTED} | {"red/green_copy.jpg"}


def test_relabel_applies_decisions_and_the_rerun_computes_nothing(planted, tiny_module, caplog, capsys):
    tmp, images, report = planted
    before = {im.name: im for im in read_record(report).images if im.folder == "blue"}
    decisions = tmp / "decisions.csv"
    with open(report / "suspected_label_errors.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    actions = {"blue/red_0.jpg": "move", "blue/red_1.jpg": "exclude", "blue/red_2.jpg": "keep"}
    with open(decisions, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=[*rows[0], "action"])
        w.writeheader()
        for row in rows:
            w.writerow({**row, "action": actions.get(Path(row["path"]).relative_to(images).as_posix(), "")})
    capsys.readouterr()
    assert relabel_main([f"--decisions={decisions}", f"--image_dir={images}",
                         f"--output_graph={tmp / 'out' / 'graph.pb'}"]) == 0
    out = capsys.readouterr().out
    assert "move blue/red_0.jpg -> red/red_0.jpg" in out and "Applied 3 of 3 decision(s)" in out
    assert (images / "red" / "red_0.jpg").is_file() and not (images / "blue" / "red_0.jpg").exists()
    assert (images / ".excluded" / "blue" / "red_1.jpg").is_file() and not (images / "blue" / "red_1.jpg").exists()
    assert (images / "blue" / "red_2.jpg").is_file()
    lines = changes(images)
    assert sorted((c["action"], c["from"], c["to"]) for c in lines) == [
        ("exclude", "blue/red_1.jpg", ".excluded/blue/red_1.jpg"), ("keep", "blue/red_2.jpg", "blue/red_2.jpg"),
        ("move", "blue/red_0.jpg", "red/red_0.jpg")]
    assert all(c["digest"] == before[c["file"]].digest and c["time"] and c["session"] for c in lines)
    assert len({c["session"] for c in lines}) == 1

    caplog.clear()
    caplog.set_level("INFO", logger="retrain")
    assert retrain(tmp, images, tiny_module) == 0
    assert "bottlenecks cached, 0 imported, 0 to compute." in caplog.text
    assert "1 image(s) changed class since the previous run." in caplog.text
    assert "Left out 1 suspected label error(s) that a review kept as labelled." in caplog.text
    assert not {f"blue/{n}" for n in PLANTED} & set(suspects(report)) and "red/red_0.jpg" not in suspects(report)
    after = {im.relative: im for im in read_record(report).images}
    assert after["red/red_0.jpg"].set == before["red_0.jpg"].set  # moved, and still in its set
    assert after["blue/red_2.jpg"].set == before["red_2.jpg"].set and "blue/red_1.jpg" not in after


def test_undo_all_takes_the_latest_session_back(planted, capsys):
    tmp, images, report = planted
    folder = ImageFolder(images)
    review = Review(read_last_run(report, images), folder)
    run = review.run.images
    by_place = {im.relative: im for im in run.values()}
    review.change(by_place["blue/red_0.jpg"], "move", "red")
    review.change(by_place["blue/red_1.jpg"], "exclude")
    review.change(by_place["blue/red_2.jpg"], "keep")
    capsys.readouterr()
    assert review_main([f"--image_dir={images}", "--undo_all"]) == 0
    assert "Took back 3 change(s) of session" in capsys.readouterr().out
    assert all((images / "blue" / name).is_file() for name in PLANTED)
    assert not (images / "red" / "red_0.jpg").exists() and not list((images / ".excluded").rglob("*.jpg"))
    lines = changes(images)
    assert [c["action"] for c in lines] == ["move", "exclude", "keep", "undo", "undo", "undo"]
    assert [c["undoes"] for c in lines[3:]] == [c["id"] for c in reversed(lines[:3])]
    assert journal.live(journal.read_changes(images)) == [] and journal.kept_as_labelled(
        journal.read_changes(images)) == set()
    assert review_main([f"--image_dir={images}", "--undo_all"]) == 0
    assert "Nothing to undo" in capsys.readouterr().out


def test_a_file_changed_or_gone_since_the_run_is_refused(planted):
    _tmp, images, report = planted
    review = Review(read_last_run(report, images), ImageFolder(images))
    by_place = {im.relative: im for im in review.run.images.values()}
    write_photo(images / "blue" / "red_0.jpg", CLASS_COLOURS["green"], seed=1)  # the same name, other content
    os.remove(images / "blue" / "red_1.jpg")
    with pytest.raises(Refused, match="changed since the run"):
        review.change(by_place["blue/red_0.jpg"], "move", "red")
    with pytest.raises(Refused, match="gone since the run"):
        review.change(by_place["blue/red_1.jpg"], "exclude")
    with pytest.raises(Refused, match="changed since the run"):
        review.change(by_place["blue/red_0.jpg"], "keep")
    assert (images / "blue" / "red_0.jpg").is_file() and not (images / "red" / "red_0.jpg").exists()
    assert journal.read_changes(images) == []


def test_a_name_clash_never_overwrites(planted):
    _tmp, images, report = planted
    review = Review(read_last_run(report, images), ImageFolder(images))
    by_place = {im.relative: im for im in review.run.images.values()}
    (images / "red" / "red_0.jpg").write_bytes(b"already here")
    with pytest.raises(Refused, match="already exists; nothing was moved"):
        review.change(by_place["blue/red_0.jpg"], "move", "red")
    assert (images / "red" / "red_0.jpg").read_bytes() == b"already here"
    assert (images / "blue" / "red_0.jpg").is_file() and journal.read_changes(images) == []
    # An excluded name that is taken gets a free one beside it instead.
    (images / ".excluded" / "blue").mkdir(parents=True)
    (images / ".excluded" / "blue" / "red_1.jpg").write_bytes(b"excluded before")
    change = review.change(by_place["blue/red_1.jpg"], "exclude")
    assert change.target == ".excluded/blue/red_1~2.jpg"
    assert (images / ".excluded" / "blue" / "red_1.jpg").read_bytes() == b"excluded before"
    with pytest.raises(FileExistsError):
        rename_no_replace(images / "red" / "img_000.jpg", images / "red" / "img_001.jpg")
    assert (images / "red" / "img_000.jpg").is_file()


def test_paths_and_links_out_of_the_folder_are_refused(planted, tmp_path, capsys):
    tmp, images, report = planted
    outside = tmp_path / "outside"
    outside.mkdir()
    (images / "elsewhere").symlink_to(outside, target_is_directory=True)
    secret = outside / "secret.jpg"
    shutil.copy(images / "blue" / "red_2.jpg", secret)
    os.remove(images / "blue" / "red_2.jpg")
    (images / "blue" / "red_2.jpg").symlink_to(secret)  # the same content, now a link out of the folder
    decisions = tmp / "decisions.csv"
    decisions.write_text("path,suggested,action\n"
                         f"{images}/../outside/secret.jpg,red,move\n"
                         "/etc/passwd,red,exclude\n"
                         f"{images}/blue/red_0.jpg,../../evil,move\n"
                         f"{images}/blue/red_0.jpg,.hidden,move\n"
                         f"{images}/blue/red_0.jpg,elsewhere,move\n"
                         f"{images}/blue/red_2.jpg,red,move\n"
                         f"{images}/blue/red_1.jpg,red,delete\n", encoding="utf-8")
    listing = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if "out" not in p.parts)
    assert relabel_main([f"--decisions={decisions}", f"--image_dir={images}",
                         f"--output_graph={tmp / 'out' / 'graph.pb'}"]) == 1
    captured = capsys.readouterr()
    refusals = [line for line in captured.err.splitlines() if line.startswith("relabel: row")]
    assert len(refusals) == 7, captured.err
    assert "is not an image of the last run" in refusals[0] and "is not an image of the last run" in refusals[1]
    assert "cannot be a class folder" in refusals[2] and "cannot be a class folder" in refusals[3]
    assert "is a link out of" in refusals[4] and "is a link" in refusals[5] and "unknown action" in refusals[6]
    assert "Applied 0 of 7 decision(s), 7 refused" in captured.out
    assert sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if "out" not in p.parts
                  and p.name != journal.JOURNAL_FILE) == listing
    assert journal.read_changes(images) == [] and sorted(os.listdir(outside)) == ["secret.jpg"]


def test_a_new_class_is_made_with_a_plain_name_and_a_typed_label_finds_its_folder(planted):
    _tmp, images, report = planted
    folder = ImageFolder(images)
    assert folder.target_folder("Red") == "red" and folder.target_folder("  red ") == "red"
    assert folder.target_folder("Sun Flowers") == "Sun Flowers"
    for bad in ("", ".excluded", "a/b", "..", "a\\b", "x\ny", "\0"):
        with pytest.raises(Refused):
            folder.target_folder(bad)
    review = Review(read_last_run(report, images), folder)
    image = next(im for im in review.run.images.values() if im.relative == "blue/red_0.jpg")
    review.change(image, "move", "Crimson reds")
    assert (images / "Crimson reds" / "red_0.jpg").is_file()
    with pytest.raises(Refused, match="already changed by a review"):
        review.change(image, "exclude")


def test_review_refuses_a_report_of_another_folder_or_none(planted, tmp_path):
    _tmp, images, report = planted
    other = make_dataset(tmp_path / "other", 3)
    with pytest.raises(Exception, match="was over"):
        read_last_run(report, other)
    with pytest.raises(Exception, match="No finished report"):
        read_last_run(tmp_path / "nowhere", images)
    (report / RECORD_FILE).unlink()
    with pytest.raises(Exception, match="no record of the run's images"):
        read_last_run(report, images)
    summary = json.loads((report / "summary.json").read_text())
    summary["settings"]["labels_csv"] = str(tmp_path / "labels.csv")
    (report / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(Exception, match="took its labels from --labels_csv"):
        read_last_run(report, images)


# ------------------------------------------------------------------------------------------ the server


@pytest.fixture
def server(planted):
    _tmp, images, report = planted
    review = Review(read_last_run(report, images), ImageFolder(images))
    srv = ReviewServer(review)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv, images
    srv.shutdown()
    srv.server_close()


def request(srv, method, path, body=None, headers=None, token=True):
    connection = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    sent = {"Host": f"127.0.0.1:{srv.port}"}
    if body is not None:
        sent["Content-Type"] = "application/json"
    if token:
        sent[TOKEN_HEADER] = srv.token
    sent.update(headers or {})
    connection.request(method, path, body=None if body is None else json.dumps(body), headers=sent)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data


def finding_of(srv, relative):
    return next(f for f in srv.review.run.findings if f.images[0].relative == relative and f.kind == "label_error")


def test_the_server_listens_on_the_loopback_only_with_a_token(server):
    srv, _images = server
    assert srv.server_address[0] == "127.0.0.1" and srv.port > 0 and len(srv.token) >= 32
    assert srv.url == f"http://127.0.0.1:{srv.port}/?token={srv.token}"
    status, page = request(srv, "GET", f"/?token={srv.token}", token=False)
    assert status == 200 and b'<script src="/page.js"' in page
    assert request(srv, "GET", "/", token=False)[0] == 403
    assert request(srv, "GET", "/api/state", token=False)[0] == 403
    assert request(srv, "GET", "/image?id=0&side=0&size=thumb", token=False)[0] == 403
    status, data = request(srv, "GET", f"/image?id=0&side=0&size=large&token={srv.token}", token=False)
    assert status == 200 and data[:2] == b"\xff\xd8"


def test_a_change_without_the_token_or_from_elsewhere_changes_nothing(server):
    srv, images = server
    target = finding_of(srv, "blue/red_0.jpg").id
    move = {"id": target, "side": 0, "action": "move", "folder": "red"}
    refusals = [
        request(srv, "POST", "/api/act", move, token=False),
        request(srv, "POST", "/api/act", move, headers={TOKEN_HEADER: "x" * len(srv.token)}),
        request(srv, "POST", "/api/act", move, headers={"Origin": "http://evil.example"}),
        request(srv, "POST", "/api/act", move, headers={"Sec-Fetch-Site": "cross-site"}),
        request(srv, "POST", "/api/act", move, headers={"Host": "evil.example:80"}),
        request(srv, "POST", "/api/act", move, headers={"Content-Type": "text/plain"}),
        request(srv, "GET", f"/api/act?id={target}&action=move&folder=red&token={srv.token}"),
    ]
    assert [status for status, _ in refusals] == [403, 403, 403, 403, 421, 415, 404]
    assert (images / "blue" / "red_0.jpg").is_file() and not (images / "red" / "red_0.jpg").exists()
    assert journal.read_changes(images) == []
    status, data = request(srv, "POST", "/api/act", move, headers={"Origin": f"http://127.0.0.1:{srv.port}"})
    assert status == 200 and json.loads(data)["ok"] and (images / "red" / "red_0.jpg").is_file()


def test_a_crafted_path_is_refused(server):
    srv, images = server
    target = finding_of(srv, "blue/red_0.jpg").id
    crafted = [
        {"id": "../../etc/passwd", "action": "exclude"},
        {"id": target, "side": "../x", "action": "exclude"},
        {"id": target, "side": 5, "action": "exclude"},
        {"id": target, "action": "move", "folder": "../../outside"},
        {"id": target, "action": "move", "folder": "/tmp"},
        {"id": target, "action": "move", "folder": ".excluded"},
        {"id": target, "action": "remove"},
    ]
    for body in crafted:
        status, data = request(srv, "POST", "/api/act", body)
        assert status == 409 and not json.loads(data)["ok"], body
    assert request(srv, "GET", f"/image?id=0&side=0&size=thumb&path=/etc/passwd&token={srv.token}",
                   token=False)[0] == 200  # extra parameters are ignored: the picture is the finding's
    assert request(srv, "GET", f"/image?id=../../etc/passwd&token={srv.token}", token=False)[0] == 400
    assert request(srv, "GET", f"/../../etc/passwd?token={srv.token}", token=False)[0] == 404
    assert journal.read_changes(images) == [] and not (images.parent / "outside").exists()
    assert (images / "blue" / "red_0.jpg").is_file()


def test_undo_through_the_server(server):
    srv, images = server
    target = finding_of(srv, "blue/red_1.jpg").id
    status, data = request(srv, "POST", "/api/act", {"id": target, "action": "exclude"})
    assert status == 200 and json.loads(data)["state"]["findings"][target]["decision"]["text"] == "excluded"
    assert request(srv, "POST", "/api/act", {"id": target, "action": "keep"})[0] == 409  # decided: undo first
    status, data = request(srv, "POST", "/api/undo", {"id": target})
    state = json.loads(data)["state"]
    assert status == 200 and state["findings"][target]["decision"] is None
    assert state["left"] == len(state["findings"])
    assert (images / "blue" / "red_1.jpg").is_file() and not list((images / ".excluded").rglob("*.jpg"))
    assert request(srv, "POST", "/api/undo", {"id": target})[0] == 409
