"""A run directory appears complete or not at all; a resumable one continues only when asked
and only with the settings it was started with (``experiments/common/rundir.py``)."""

import json

import pytest

from experiments.common.rundir import MARKER, RunDirectory


class _Kill(Exception):
    pass


def _old_run(out):
    out.mkdir()
    (out / MARKER).write_text('{"old": true}')
    (out / "fig.png").write_bytes(b"old figure")


def test_success_replaces_the_old_run_as_a_whole(tmp_path):
    out = tmp_path / "run"
    _old_run(out)
    with RunDirectory(out) as tmp:
        assert tmp != out and tmp.parent == tmp_path
        (tmp / MARKER).write_text('{"new": true}')
    assert json.loads((out / MARKER).read_text()) == {"new": True}
    assert not (out / "fig.png").exists()  # nothing of the old run is left beside the new one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_interrupt_leaves_the_old_run_untouched_and_keeps_the_partial_one(tmp_path, capsys):
    out = tmp_path / "run"
    _old_run(out)
    with pytest.raises(_Kill), RunDirectory(out) as tmp:
        (tmp / "fig.png").write_bytes(b"new figure")
        raise _Kill
    assert (out / "fig.png").read_bytes() == b"old figure"
    assert (tmp / "fig.png").read_bytes() == b"new figure"
    assert str(tmp) in capsys.readouterr().err


def test_out_that_is_not_a_run_is_refused(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("...")
    with pytest.raises(ValueError, match=r"--out .*not an earlier run"):
        RunDirectory(tmp_path / "mine")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="--out"):
        RunDirectory(tmp_path / "file")


def test_resumable_run_continues_only_when_asked_and_with_the_same_settings(tmp_path, capsys):
    out = tmp_path / "run"
    ident = {"mu": 20.0, "data": "folder:x"}
    rd = RunDirectory(out, resume=False, identity=ident, scratch=("state", "shards"))
    with pytest.raises(_Kill), rd as work:
        assert work == tmp_path / ".run.partial"
        (work / "state").mkdir()
        (work / "state" / "step-3").write_text("3")
        (work / "keep.txt").write_text("k")
        raise _Kill
    assert "rerun with --resume" in capsys.readouterr().err
    assert not out.exists()
    # a fresh start over the interrupted run is refused, not silently mixed or discarded
    with pytest.raises(ValueError, match=r"interrupted run is in .*\.run\.partial.*--resume"):
        with RunDirectory(out, resume=False, identity=ident):
            pass
    # resuming with other settings names the differing keys
    with pytest.raises(ValueError, match=r"differs in \['data', 'mu'\]"):
        with RunDirectory(out, resume=True, identity={"mu": 2.0, "data": "folder:y"}):
            pass
    with RunDirectory(out, resume=True, identity=ident, scratch=("state", "shards")) as work:
        assert (work / "state" / "step-3").read_text() == "3"  # the state it left
        (work / MARKER).write_text("{}")
    assert "resuming" in capsys.readouterr().out
    # complete: moved into place without its resumable state or identity file
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt", MARKER]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_resume_without_an_interrupted_run_starts_one(tmp_path):
    out = tmp_path / "run"
    with RunDirectory(out, resume=True, identity={"a": 1}) as work:
        assert json.loads((work / "run.json").read_text()) == {"a": 1}
        (work / MARKER).write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == [MARKER]
