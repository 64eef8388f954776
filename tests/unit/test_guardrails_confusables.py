"""Unit tests of the shipped UTS #39 look-alike data and the script lookup."""

from __future__ import annotations

from pathlib import Path

from kit.guardrails import confusables


def test_data_file_is_what_the_unicode_data_gives():
    """lookalikes.txt is exactly what the generator writes from Unicode's confusables data."""
    rows = confusables.rows_from_unicode_data()
    listed = confusables.load()
    assert {ch: (letter, script) for ch, letter, script in rows} == listed
    text = Path(confusables.DATA_FILE).read_text(encoding="utf-8")
    assert text.startswith(confusables.HEADER) and "Unicode License v3" in confusables.HEADER


def test_data_holds_the_classic_look_alikes():
    """Cyrillic and Greek look-alikes map to their Latin letter with their script."""
    data = confusables.load()
    assert data["\u0440"] == ("p", "CYRILLIC") and data["\u0455"] == ("s", "CYRILLIC")
    assert data["\u03bf"] == ("o", "GREEK") and data["\u0251"] == ("a", "LATIN")
    assert len(data) > 1000 and all(len(letter) == 1 and letter.isascii() for letter, _ in data.values())


def test_script_of_letters():
    """Scripts come from the data where it has them, from Unicode names otherwise."""
    assert confusables.script("a") == "LATIN" and confusables.script("ü") == "LATIN"
    assert confusables.script("\u0440") == "CYRILLIC" and confusables.script("\u0431") == "CYRILLIC"
    assert confusables.script("\u03b2") == "GREEK" and confusables.script("5") == "COMMON"
    assert confusables.script("\uff41") == "LATIN"  # full-width a
