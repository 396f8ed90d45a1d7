"""`robustness run`: what it refuses before starting Ray, and --dry-run."""

from __future__ import annotations

import yaml

from tests.test_engine import SMALL, write_spec


def test_dry_run_prints_the_plan_and_its_size_without_starting_ray(tmp_path, cli):
    import ray

    spec = write_spec(tmp_path / "tiny.yaml")
    result = cli("run", spec, "--out", tmp_path / "out", "--dry-run")
    assert result.code == 0, result.err
    assert "6 configurations x 1 seeds = 6 runs" in result.out
    assert not (tmp_path / "out").exists()
    assert not ray.is_initialized()


def test_dry_run_without_spec_plans_the_bundled_quickstart(cli):
    result = cli("run", "--dry-run")
    assert result.code == 0, result.err
    assert "study quickstart" in result.out


def test_non_empty_results_dir_without_resume_is_refused(tmp_path, cli):
    out = tmp_path / "out"
    out.mkdir()
    (out / "something.txt").write_text("another study's file")
    result = cli("run", write_spec(tmp_path / "tiny.yaml"), "--out", out)
    assert result.code == 2
    assert "not empty" in result.err and "--resume" in result.err
    assert sorted(p.name for p in out.iterdir()) == ["something.txt"]


def test_resume_with_a_different_spec_is_refused(tmp_path, cli):
    out = tmp_path / "out"
    out.mkdir()
    previous = {**SMALL, "seeds": [0, 1], "provenance": {"started": "2026-01-01T00:00:00+00:00"}}
    (out / "spec.yaml").write_text(yaml.safe_dump(previous))
    result = cli("run", write_spec(tmp_path / "tiny.yaml"), "--out", out, "--resume")
    assert result.code == 2
    assert "different spec" in result.err and "seeds" in result.err


def test_resume_in_a_directory_without_a_study_is_refused(tmp_path, cli):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.md").write_text("x")
    result = cli("run", write_spec(tmp_path / "tiny.yaml"), "--out", out, "--resume")
    assert result.code == 2 and "no spec.yaml" in result.err


def test_invalid_spec_is_refused_before_anything_starts(tmp_path, cli):
    spec = write_spec(tmp_path / "bad.yaml", search={"sampler": "annealing"})
    result = cli("run", spec, "--out", tmp_path / "out")
    assert result.code == 2 and "sampler" in result.err
    assert not (tmp_path / "out").exists()


def test_resume_without_a_spec_continues_the_study_of_out(tmp_path, cli):
    from robustness.results import store
    from robustness.spec import load_spec

    out = tmp_path / "out"
    resolved = load_spec(write_spec(tmp_path / "tiny.yaml")).resolved()
    store.write_spec(out, resolved, store.provenance(store.utc_now()))
    result = cli("run", "--out", out, "--resume", "--dry-run")
    assert result.code == 0, result.err
    assert "study tiny" in result.out and "quickstart" not in result.out


def test_resume_without_a_spec_needs_a_study_in_out(tmp_path, cli):
    result = cli("run", "--out", tmp_path / "empty", "--resume")
    assert result.code == 2 and "no spec.yaml" in result.err
    result = cli("run", "--resume")
    assert result.code == 2 and "--out" in result.err


def test_a_study_stopped_by_a_write_failure_exits_1_with_its_message(tmp_path, cli, monkeypatch):
    import robustness.engine as engine
    from robustness.errors import StudyStoppedError

    def stopped(*args, **kwargs):
        raise StudyStoppedError("the study in 'x' stopped: disk full. Every run persisted ...")

    monkeypatch.setattr(engine, "run_study", stopped, raising=False)
    result = cli("run", write_spec(tmp_path / "tiny.yaml"), "--out", tmp_path / "out")
    assert result.code == 1
    assert "error: the study in 'x' stopped: disk full" in result.err
    assert "Traceback" not in result.err and "ROBUSTNESS_DEBUG" not in result.err


def test_resume_accepts_a_stored_spec_written_before_keys_with_defaults_were_added(tmp_path):
    import datetime as dt

    from robustness.engine._study import _check_out_dir
    from robustness.spec import parse_spec

    resolved = parse_spec(SMALL).resolved()
    older = yaml.safe_load(yaml.safe_dump(resolved))
    older["problem"].pop("tf32")  # keys a later version added, at their defaults
    for entry in older["optimizers"].values():
        for key in ("class", "axes", "takes"):
            entry.pop(key, None)
    out = tmp_path / "out"
    out.mkdir()
    started = "2026-01-01T00:00:00+00:00"
    (out / "spec.yaml").write_text(yaml.safe_dump({**older, "provenance": {"started": started}}))
    assert _check_out_dir(out, resolved, resume=True) == dt.datetime.fromisoformat(started)
