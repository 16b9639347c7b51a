"""collect_images: folders, files, list files and globs -> (path, output stem), in a fixed order."""
from __future__ import annotations

from pathlib import Path

from fcn_deploy.imageio import collect_images


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_list_files_globs_and_missing_entries(tmp_path):
    a = _touch(tmp_path / "imgs" / "a.jpg")
    b = _touch(tmp_path / "imgs" / "b.png")
    _touch(tmp_path / "imgs" / "notes.md")
    c = _touch(tmp_path / "other" / "a.png")
    (tmp_path / "list.txt").write_text("# comment\n imgs/b.png \n\nimgs/gone.jpg\nother/a.png\n")
    found, missing = collect_images([tmp_path / "list.txt", str(tmp_path / "imgs" / "*"),
                                     str(tmp_path / "none" / "*.jpg")])
    # listed first (b, other/a), then the glob's images sorted (a, b); clashing stems numbered
    assert found == [(b, "b"), (c, "a"), (a, "a_2"), (b, "b_2")]
    assert missing == [(tmp_path / "imgs" / "gone.jpg",
                        f"does not exist (listed in {tmp_path / 'list.txt'})"),
                       (tmp_path / "none" / "*.jpg", "matches no image")]
