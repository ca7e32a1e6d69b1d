"""``stgconv.io.folder``: the visible files of a folder, filtered by suffix, in natural name
order; its folders, and their names for a message."""

from __future__ import annotations

from pathlib import Path

import pytest

from stgconv.io.folder import folder_names, list_files


def touch(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")
    return folder


def names(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def test_natural_order_unpadded_numbers(tmp_path: Path) -> None:
    folder = touch(tmp_path, "f10.png", "f2.png", "f1.png", "f100.png", "f9.png")
    assert names(list_files(folder)) == ["f1.png", "f2.png", "f9.png", "f10.png", "f100.png"]


def test_natural_order_several_numbers_and_case(tmp_path: Path) -> None:
    folder = touch(tmp_path, "Clip2_f10.mp4", "clip10_f1.mp4", "clip2_f9.mp4", "b.mp4",
                   "A.mp4", "7.mp4", "10.mp4")
    assert names(list_files(folder)) == ["7.mp4", "10.mp4", "A.mp4", "b.mp4", "clip2_f9.mp4",
                                         "Clip2_f10.mp4", "clip10_f1.mp4"]


def test_numbers_longer_than_a_float_holds_compare_exactly(tmp_path: Path) -> None:
    folder = touch(tmp_path, "f100000000000000000.png", "f99999999999999999.png")
    assert names(list_files(folder)) == ["f99999999999999999.png", "f100000000000000000.png"]


def test_an_underscore_sorts_before_letters_as_in_lower_case(tmp_path: Path) -> None:
    folder = touch(tmp_path, "ab.png", "A_b.png", "a_c.png")
    assert names(list_files(folder)) == ["A_b.png", "a_c.png", "ab.png"]


def test_zero_padded_and_unpadded_interleave_by_value(tmp_path: Path) -> None:
    folder = touch(tmp_path, "frame003.png", "frame12.png", "frame0100.png", "frame7.png")
    assert names(list_files(folder)) == ["frame003.png", "frame7.png", "frame12.png",
                                         "frame0100.png"]


def test_skips_hidden_files_and_folders_and_does_not_recurse(tmp_path: Path) -> None:
    folder = touch(tmp_path / "data", "a.png", ".hidden.png", ".DS_Store", "._a.png")
    touch(folder / "sub.png", "inner.png")  # a folder whose name looks like a file
    touch(folder / ".cache", "b.png")
    files = list_files(folder)
    assert files == [folder / "a.png"]  # full paths inside the folder


def test_suffix_filter_is_case_insensitive_on_the_file(tmp_path: Path) -> None:
    folder = touch(tmp_path, "a.PNG", "b.png", "c.jpg", "d.Jpeg", "e.txt", "noext", "f.png.bak")
    assert names(list_files(folder, (".png",))) == ["a.PNG", "b.png"]
    assert names(list_files(folder, {".jpg", ".jpeg", ".png"})) == ["a.PNG", "b.png", "c.jpg",
                                                                     "d.Jpeg"]
    assert names(list_files(folder, [".bak"])) == ["f.png.bak"]  # only the last suffix counts


def test_no_filter_lists_every_file_but_empty_filter_lists_none(tmp_path: Path) -> None:
    folder = touch(tmp_path, "a.txt", "b", "c.png")
    assert names(list_files(folder)) == ["a.txt", "b", "c.png"]
    assert names(list_files(folder, None)) == ["a.txt", "b", "c.png"]
    assert list_files(folder, ()) == []


def test_suffixes_not_given_as_dotted_suffixes_are_refused_or_matched_as_meant(
        tmp_path: Path) -> None:
    """One suffix given as a string was searched for each name's suffix as a substring: ".png"
    listed "noext" ("" is in any string) and "x.pn"; "png" without its dot listed nothing, as
    did ".PNG" (names are compared lower-cased)."""
    folder = touch(tmp_path, "a.png", "x.pn", "noext")
    with pytest.raises(ValueError, match=r"suffixes must be a collection of suffixes with "
                                         r"their dot, such as \('\.png', '\.jpg'\), got '\.png'"):
        list_files(folder, ".png")
    with pytest.raises(ValueError, match=r"got \['png'\]"):
        list_files(folder, ["png"])
    assert names(list_files(folder, (".PNG",))) == ["a.png"]
    assert names(list_files(folder, (suffix for suffix in [".png"]))) == ["a.png"]


def test_empty_folder(tmp_path: Path) -> None:
    assert list_files(tmp_path) == []


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list_files(tmp_path / "missing")
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        list_files(tmp_path / "file.png")


def test_superscript_and_circled_digits_are_text(tmp_path: Path) -> None:
    """str.isdigit() says yes to "²" and "①", which are no decimal digits: they sort as text."""
    for name in ("f1²", "f1①", "f2", "f10"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_files(tmp_path)] == ["f1²", "f1①", "f2", "f10"]


def test_names_equal_in_natural_order_sort_by_their_raw_name(tmp_path: Path) -> None:
    for name in ("f2.png", "f02.png", "a.png", "A.png"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_files(tmp_path)] == ["A.png", "a.png", "f02.png", "f2.png"]


def test_a_link_to_nothing_is_named(tmp_path: Path) -> None:
    folder = touch(tmp_path / "shapes", "a.off")
    (folder / "b.off").symlink_to(tmp_path / "unmounted" / "b.off")
    (folder / "notes.txt").symlink_to(tmp_path / "gone.txt")  # filtered out: not asked for
    with pytest.raises(ValueError, match=r"b\.off: a link to .*unmounted/b\.off, which does "
                                         "not exist"):
        list_files(folder, [".off"])
    (folder / "b.off").unlink()
    assert names(list_files(folder, [".off"])) == ["a.off"]


def test_a_link_to_nothing_is_named_with_its_target_as_written(tmp_path: Path) -> None:
    """What the link holds, relative as it was made, not a path worked out from it."""
    folder = touch(tmp_path / "shapes", "a.off")
    (folder / "b.off").symlink_to(Path("..") / "unmounted" / "b.off")
    with pytest.raises(ValueError, match=r"/shapes/b\.off: a link to \.\./unmounted/b\.off, "
                                         "which does not exist$"):
        list_files(folder)


def test_a_link_to_a_missing_file_in_a_folder_that_exists_is_named(tmp_path: Path) -> None:
    folder = touch(tmp_path / "shapes", "a.off")
    (folder / "b.off").symlink_to(tmp_path / "b.off")
    with pytest.raises(ValueError, match=r"b\.off: a link to .*b\.off, which does not exist"):
        list_files(folder)


def test_a_link_to_nothing_is_no_folder(tmp_path: Path) -> None:
    (tmp_path / "c1").mkdir()
    (tmp_path / "c0").symlink_to(tmp_path / "unmounted", target_is_directory=True)
    assert folder_names(tmp_path) == "c1"


def test_a_link_to_a_folder_is_neither_a_file_nor_a_link_to_nothing(tmp_path: Path) -> None:
    folder = touch(tmp_path / "shapes", "a.off")
    (folder / "more.off").symlink_to(touch(tmp_path / "elsewhere"), target_is_directory=True)
    assert names(list_files(folder, [".off"])) == ["a.off"]


def test_links_to_nothing_are_listed_when_asked(tmp_path: Path) -> None:
    folder = touch(tmp_path / "shapes", "a.off")
    (folder / "b.off").symlink_to(tmp_path / "unmounted" / "b.off")
    assert names(list_files(folder, [".off"], dangling_links=True)) == ["a.off", "b.off"]


@pytest.mark.parametrize("listed", [sorted, lambda paths: sorted(paths, reverse=True)])
def test_natural_order_ties_do_not_depend_on_the_listing_order(tmp_path: Path, monkeypatch,
                                                               listed) -> None:
    for name in ("f2.png", "f02.png", "f002.png", "a.png", "A.png"):
        (tmp_path / name).write_bytes(b"")
    iterdir = Path.iterdir
    monkeypatch.setattr(Path, "iterdir", lambda self: iter(listed(iterdir(self))))
    assert [p.name for p in list_files(tmp_path)] == ["A.png", "a.png", "f002.png", "f02.png",
                                                      "f2.png"]
    for name in ("d2", "d02"):
        (tmp_path / name).mkdir()
    assert folder_names(tmp_path) == "d02, d2"


def test_folder_names_shows_the_first_three_in_natural_order(tmp_path: Path) -> None:
    for name in ("c10", "c2", "c1", ".hidden", "__MACOSX", "c3"):
        (tmp_path / name).mkdir()
    touch(tmp_path, "file.txt")
    assert folder_names(tmp_path) == "c1, c2, c3, ..."
    (tmp_path / "c10").rmdir()
    assert folder_names(tmp_path) == "c1, c2, c3"
    assert folder_names(tmp_path / "c1") == ""
