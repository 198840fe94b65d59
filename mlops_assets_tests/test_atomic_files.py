"""Files published atomically: the one helper (``mlops_assets.atomic``) replaces a file whole or
leaves it as it was when the writer fails, and leaves no temporary file behind; the champion
pointer (``storage.champion_pointer``) round-trips and refuses a file that is not a pointer,
naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_assets.atomic import write_atomic, write_text_atomic
from mlops_assets.storage import champion_pointer


def test_a_failed_write_keeps_the_previous_content_and_no_temporary_file(tmp_path: Path) -> None:
    path = write_text_atomic(tmp_path / "sub" / "a.json", '{"v": 1}')
    assert path.read_text() == '{"v": 1}' and oct(path.stat().st_mode & 0o777) == "0o644"

    def broken(tmp: Path) -> None:
        tmp.write_text('{"v": 2, "half')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, broken)
    assert path.read_text() == '{"v": 1}'
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]
    write_text_atomic(path, '{"v": 3}')
    assert path.read_text() == '{"v": 3}'


def test_the_pointer_round_trips_and_a_bad_one_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "champion.json"
    assert champion_pointer.read(path) is None
    champion_pointer.publish(path, "m_dev", "7", ["champion", "larva"])
    pointer = champion_pointer.read(path)
    assert pointer is not None and pointer.model_name == "m_dev"
    assert pointer.aliases == {"champion": "7", "larva": "7"} and pointer.version("x") is None
    champion_pointer.publish(path, "m_dev", None, ["champion"])
    assert champion_pointer.read(path).version("champion") is None
    path.write_text("[1, 2]")
    with pytest.raises(champion_pointer.PointerError, match="lacks 'model_name'"):
        champion_pointer.read(path)
    path.write_text("{")
    with pytest.raises(champion_pointer.PointerError, match=f"{path} is not JSON"):
        champion_pointer.read(path)
