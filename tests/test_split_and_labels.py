"""Labels from folder names and the stable hash split."""
import pytest
from helpers import make_dataset, write_photo

from bottleneck.data.split import SETS, percentage_hash, split_class, which_set
from bottleneck.data.walk import ImageClass, ImageFile, label_for_folder, list_images
from bottleneck.errors import UserError


@pytest.mark.parametrize(
    "folder, label",
    [
        ("Daisy", "daisy"),
        ("sun_flowers", "sun flowers"),
        ("Red--Roses  2", "red roses 2"),
        ("猫", "猫"),
        ("Crème Brûlée", "crème brûlée"),
    ],
)
def test_label_is_lower_case_with_runs_of_other_characters_as_one_space(folder, label):
    assert label_for_folder(folder) == label


def test_non_ascii_folders_stay_distinct_classes(tmp_path):
    root = make_dataset(tmp_path / "img", {"猫": 3, "狗": 3})
    labels = sorted(c.label for c in list_images(root).classes)
    assert labels == sorted(["猫", "狗"])


def test_two_folders_with_the_same_label_are_an_error(tmp_path):
    make_dataset(tmp_path / "img", {"Sun_Flowers": 3, "sun flowers": 3})
    with pytest.raises(UserError, match="both give the label 'sun flowers'"):
        list_images(tmp_path / "img")


def test_nohash_suffix_keeps_variants_of_one_photo_in_the_same_set():
    base = which_set("cat.jpg", 10, 10)
    for i in range(20):
        assert which_set(f"cat.jpg_nohash_{i}.jpg", 10, 10) == base


def test_split_values_are_pinned_so_existing_splits_never_change():
    # Values of the classic formula (sha1 of the name, modulo 2**27, scaled to 100), pinned: a
    # change here would silently move users' images between training and test sets.
    assert percentage_hash("a/b.jpg") == pytest.approx(43.93191146799856, abs=1e-9)
    assert percentage_hash("daisy_nohash_3.jpg") == pytest.approx(59.9300307030233, abs=1e-9)
    assert percentage_hash("daisy_nohash_3.jpg") == percentage_hash("daisy")


def test_split_is_stable_when_images_are_added_or_the_folder_moves(tmp_path):
    names = [f"img_{i}.jpg" for i in range(200)]
    before = {n: which_set(n, 10, 10) for n in names}
    more = names + [f"new_{i}.jpg" for i in range(100)]
    after = {n: which_set(n, 10, 10) for n in more}
    assert all(after[n] == before[n] for n in names)
    # The name hashed is relative to the class folder, so moving the data set changes nothing.
    a = make_dataset(tmp_path / "here", {"x": 5, "y": 5})
    b = make_dataset(tmp_path / "elsewhere" / "deeper", {"x": 5, "y": 5})
    split_a = [split_class(c, 20, 20)[0] for c in list_images(a).classes]
    split_b = [split_class(c, 20, 20)[0] for c in list_images(b).classes]
    for sa, sb in zip(split_a, split_b):
        for s in ("training", "validation", "testing"):
            assert [i.name for i in sa.of(s)] == [i.name for i in sb.of(s)]


def test_split_proportions_follow_the_percentages():
    names = [f"photo_{i}.jpg" for i in range(5000)]
    sets = [which_set(n, 10, 20) for n in names]
    assert sets.count("validation") / 5000 == pytest.approx(0.10, abs=0.015)
    assert sets.count("testing") / 5000 == pytest.approx(0.20, abs=0.015)


def _class_of(n, tmp_path):
    folder = tmp_path / "c"
    images = [ImageFile(write_photo(folder / f"{i}.jpg", (1, 2, 3), i), f"{i}.jpg") for i in range(n)]
    return ImageClass("c", folder, images)


@pytest.mark.parametrize("n", [3, 4, 5, 8])
def test_small_classes_keep_one_image_in_every_set(n, tmp_path):
    split, note = split_class(_class_of(n, tmp_path), 10, 10)
    assert len(split.training) >= 1 and len(split.validation) >= 1 and len(split.testing) >= 1
    assert len(split.training) + len(split.validation) + len(split.testing) == n


@pytest.mark.parametrize("n", range(3, 13))
@pytest.mark.parametrize("validation, testing", [(10, 10), (0, 10), (10, 0), (1, 1), (45, 45)])
def test_a_class_of_three_or_more_keeps_an_image_in_every_set_asked_for(tmp_path, n, validation, testing):
    folder = tmp_path / "c"
    for salt in range(6):  # several name patterns per size, so that many hash layouts are tried
        image_class = ImageClass("c", folder, [ImageFile(folder / f"{salt}-{i}.jpg", f"{salt}-{i}.jpg")
                                               for i in range(n)])
        split, note = split_class(image_class, validation, testing)
        sizes = {s: len(split.of(s)) for s in SETS}
        assert sum(sizes.values()) == n
        assert sorted(i.name for s in SETS for i in split.of(s)) == sorted(i.name for i in image_class.images)
        assert sizes["training"] >= 1
        assert sizes["validation"] >= (1 if validation > 0 else 0)
        assert sizes["testing"] >= (1 if testing > 0 else 0)
        if note:  # what it did, and to which class
            assert note.startswith("Class 'c' has only") and "moved" in note


@pytest.mark.parametrize("n", [1, 2])
def test_classes_of_one_or_two_images_train_on_all_and_say_so(n, tmp_path):
    split, note = split_class(_class_of(n, tmp_path), 10, 10)
    assert len(split.training) == n and not split.validation and not split.testing
    assert note and f"only {n} image" in note
