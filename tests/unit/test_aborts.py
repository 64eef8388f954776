"""kit.aborts: the folder through which the pipeline aborts its LLM requests (no server needed)."""

from __future__ import annotations

import os

import pytest

from kit import aborts


def test_a_posted_abort_is_read_once_and_removed_once_carried_out(tmp_path):
    """The LLM reads each name once; removing it (done by the instance that ran the request) deletes its file."""
    sender, reader = aborts.AbortMailbox(tmp_path / "llm"), aborts.AbortMailbox(tmp_path / "llm")
    assert reader.read() == []  # nothing posted yet: the folder does not even exist
    sender.post("a1b2")
    sender.post("c3-d4")
    assert sorted(reader.read()) == ["a1b2", "c3-d4"]
    assert reader.read() == []
    reader.remove("a1b2")
    reader.remove("a1b2")  # another instance was first: no error
    assert sorted(os.listdir(tmp_path / "llm")) == ["c3-d4"]


def test_an_abort_nobody_carried_out_is_forgotten_and_deleted_after_keep_s(tmp_path):
    """A name whose request never came (or finished already) goes after KEEP_S, so the folder stays small."""
    clock = [0.0]
    mailbox = aborts.AbortMailbox(tmp_path, keep_s=60, clock=lambda: clock[0])
    mailbox.post("old")
    assert mailbox.read() == ["old"]
    clock[0] = 30
    mailbox.post("new")
    assert mailbox.read() == ["new"]
    clock[0] = 61
    assert mailbox.read() == [] and os.listdir(tmp_path) == ["new"]
    clock[0] = 91
    assert mailbox.read() == [] and os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["", ".hidden", "../escape", "a/b", "spa ce", "naïve"])
def test_a_name_that_is_not_a_plain_file_name_is_refused(tmp_path, name):
    with pytest.raises(ValueError, match="letters, digits"):
        aborts.AbortMailbox(tmp_path / "llm").post(name)
    assert not (tmp_path / "llm").exists()


def test_close_removes_only_empty_folders(tmp_path):
    """An unloading model removes its folder and its server's, unless another model still has aborts there."""
    base = tmp_path / "kit-aborts-1"
    llm, other = aborts.AbortMailbox(base / "llm"), aborts.AbortMailbox(base / "other")
    llm.post("x")
    other.post("y")
    llm.close()
    assert (base / "llm" / "x").exists()
    llm.remove("x")
    llm.close()
    assert not (base / "llm").exists() and (base / "other").exists()
    other.remove("y")
    other.close()
    assert not base.exists()


def test_the_folder_is_the_servers_so_both_stubs_agree_and_two_servers_do_not(monkeypatch, tmp_path):
    """A stub's parent is its tritonserver: the folder is named by that pid and the LLM model."""
    assert aborts.folder("llm") == aborts.base_folder(os.getppid()) / "llm"
    assert aborts.folder("llm", 4242).name == "llm"
    assert aborts.folder("llm", 4242).parent.name == "kit-aborts-4242"
    assert aborts.folder("llm", 4242) != aborts.folder("llm", 4243)


def test_remove_folders_takes_what_a_killed_servers_stubs_left(monkeypatch, tmp_path):
    monkeypatch.setattr(aborts, "base_folder", lambda pid: tmp_path / f"kit-aborts-{pid}")
    aborts.AbortMailbox(aborts.folder("llm", 7)).post("left")
    aborts.AbortMailbox(aborts.folder("llm", 8)).post("kept")
    aborts.remove_folders(7)
    aborts.remove_folders(9)  # nothing there: no error
    assert [p.name for p in tmp_path.iterdir()] == ["kit-aborts-8"]
