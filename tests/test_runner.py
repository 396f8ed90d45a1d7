"""The trial runner end to end on small real problems (digits MLP, linreg)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from robustness.data import load_dataset
from robustness.errors import UserInputError
from robustness.results.schema import CURVE_COLUMNS, TRIAL_COLUMNS
from robustness.runner import ScheduleConfig, TrialConfig, run_trial
from robustness.runner import trial as trial_module


def config(**overrides) -> TrialConfig:
    """A small digits/MLP/SGD configuration; one thread keeps runs fast and exact."""
    fields = {
        "optimizer": "sgd",
        "lr": 0.1,
        "beta": 0.9,
        "steps": 60,
        "eval_every": 20,
        "seeds": (0,),
        "threads": 1,
        "device": "cpu",
    }
    fields.update(overrides)
    return TrialConfig(**fields)


def metrics(record: dict) -> dict:
    """A record without the fields that legitimately differ between reruns."""
    return {k: v for k, v in record.items() if k not in ("wall_seconds", "node_id")}


def test_same_seed_is_bit_identical_and_other_seeds_differ():
    first = run_trial(config(seeds=(3, 4)))
    again = run_trial(config(seeds=(3,)))
    assert metrics(again.records[0]) == metrics(first.records[0])
    assert again.curves == [c for c in first.curves if c["run_id"] == "local-s3"]
    assert first.records[1]["final_train_loss"] != first.records[0]["final_train_loss"]
    assert first.records[1]["initial_loss"] != first.records[0]["initial_loss"]


def test_records_and_curves_have_exactly_the_schema_columns_plus_tags():
    result = run_trial(config(tags={"weight_decay": 0.0}), trial_id="t7")
    record = result.records[0]
    assert list(record) == [*TRIAL_COLUMNS, "weight_decay"]
    assert record["run_id"] == "t7-s0" and record["trial_id"] == "t7"
    assert record["study"] is None and record["node_id"]
    assert all(set(row) == set(CURVE_COLUMNS) for row in result.curves)
    assert [row["step"] for row in result.curves] == [0, 20, 40, 60]
    assert result.dataset_metadata["n_train"] == load_dataset("digits").metadata["n_train"]


def test_mlp_with_sgd_momentum_reaches_90_percent_on_digits_in_a_few_epochs():
    result = run_trial(config(steps=None, epochs=5, seeds=(0, 1)))
    n_train = result.dataset_metadata["n_train"]
    for record in result.records:
        assert record["outcome"] == "converged"
        assert record["final_val_acc"] >= 0.9
        assert record["steps_done"] == 5 * math.ceil(n_train / 128)
        assert record["final_train_loss"] < 0.5 * record["initial_loss"]
    assert result.objective == pytest.approx(sum(r["final_val_loss"] for r in result.records) / 2)


def test_huge_lr_diverges_early_and_records_the_exact_first_bad_step():
    result = run_trial(config(lr=3.0, steps=1000))
    record = result.records[0]
    assert record["outcome"] == "diverged"
    assert record["divergence_cause"] in ("explosion", "nonfinite")
    step = record["diverged_step"]
    assert 1 <= step <= record["steps_done"] < step + 10  # stopped at the next check
    # the step is exact: a budget one step shorter never sees the bad loss
    before = run_trial(config(lr=3.0, steps=step - 1)).records[0]
    assert before["outcome"] != "diverged"
    until = run_trial(config(lr=3.0, steps=step)).records[0]
    assert (until["outcome"], until["diverged_step"]) == ("diverged", step)
    # a diverged run counts as its untrained model: the step-0 validation loss
    assert record["objective"] == record["initial_val_loss"]
    assert math.isfinite(record["initial_val_loss"])


def test_a_diverged_run_counts_as_untrained_not_as_its_pre_divergence_best():
    # momentum 0.995 at lr 0.3 learns for ~90 steps (val loss 0.40), then diverges
    cfg = config(lr=0.3, beta=0.995, steps=120, eval_every=5, objective="best_val_loss")
    record = run_trial(cfg).records[0]
    assert record["outcome"] == "diverged" and record["diverged_step"] > 50
    assert record["best_val_loss"] < 0.5 * record["initial_val_loss"]
    assert record["objective"] == record["initial_val_loss"]


def test_a_diverged_accuracy_objective_is_the_untrained_accuracy_not_class_0():
    """The issue's example: SGD at lr 30 blows up at step 3; the blown-up network
    predicts one class everywhere, so its raw accuracy is that class's frequency
    (class 5 here), which must not count."""
    cfg = config(lr=30.0, beta=0.9, steps=100, objective="final_val_acc")
    result = run_trial(cfg)
    record = result.records[0]
    y_val = load_dataset("digits").y_val
    frequencies = (torch.bincount(y_val) / len(y_val)).tolist()
    assert record["outcome"] == "diverged" and record["diverged_step"] == 3
    assert record["final_val_acc"] == pytest.approx(frequencies[5])
    assert record["initial_val_acc"] not in frequencies
    assert record["objective"] == result.objective == record["initial_val_acc"]
    # step 0 is the curve's first row: the initial metrics are that evaluation
    first = result.curves[0]
    assert first["step"] == 0
    assert (first["val_loss"], first["val_acc"]) == (
        record["initial_val_loss"],
        record["initial_val_acc"],
    )


def test_tiny_lr_stalls_and_its_objective_is_capped():
    record = run_trial(config(lr=1e-7, steps=40)).records[0]
    assert record["outcome"] == "stalled"
    assert record["diverged_step"] is None
    assert record["objective"] == min(record["final_val_loss"], record["initial_val_loss"])


def test_accuracy_objective_is_the_accuracy():
    result = run_trial(config(objective="best_val_acc"))
    assert result.objective == result.records[0]["best_val_acc"] > 0.5
    record = run_trial(config(objective="final_train_acc")).records[0]
    assert record["objective"] == max(record["final_train_acc"], record["initial_train_acc"])
    assert 0.0 < record["initial_train_acc"] < 0.5


def test_linreg_gd_converges_just_below_2_over_hessian_max_eig_and_diverges_above():
    """Ties the dataset's curvature metadata to the loss the runner trains."""
    edge = 2.0 / load_dataset("linreg").metadata["hessian_max_eig"]
    common = {
        "dataset": "linreg",
        "model": "linear",
        "beta": 0.0,
        "batch_size": "full",
        "steps": 300,
        "eval_every": 100,
    }
    below = run_trial(config(lr=0.95 * edge, **common)).records[0]
    above = run_trial(config(lr=1.05 * edge, **common)).records[0]
    assert below["outcome"] == "converged"
    assert below["final_train_loss"] < 0.05 * below["initial_loss"]
    assert math.isnan(below["final_val_acc"])  # regression: no accuracy
    assert above["outcome"] == "diverged"
    assert above["divergence_cause"] == "explosion"
    assert above["steps_done"] < 300


def test_full_batch_is_one_step_per_epoch_and_equals_batch_size_n():
    n_train = load_dataset("digits").metadata["n_train"]
    full = run_trial(config(batch_size="full", steps=None, epochs=12, eval_every=4))
    as_int = run_trial(config(batch_size=n_train, steps=None, epochs=12, eval_every=4))
    assert full.records[0]["steps_done"] == 12
    assert [row["epoch"] for row in full.curves] == [0.0, 4.0, 8.0, 12.0]
    assert metrics(full.records[0]) == metrics(as_int.records[0])


def test_step_schedule_changes_the_lr_at_the_milestones():
    schedule = ScheduleConfig(name="step", milestones=(0.5, 0.75), gamma=0.1)
    result = run_trial(config(lr=0.2, steps=100, eval_every=10, schedule=schedule))
    lrs = {row["step"]: row["lr"] for row in result.curves}
    assert lrs[10] == lrs[50] == pytest.approx(0.2)
    assert lrs[60] == lrs[70] == pytest.approx(0.02)
    assert lrs[80] == lrs[100] == pytest.approx(0.002)


def test_schedule_reaches_the_optimizer():
    # full-batch GD whose lr drops to ~0 halfway: the loss stops moving there
    schedule = ScheduleConfig(name="step", milestones=(0.5,), gamma=1e-12)
    result = run_trial(
        config(
            dataset="linreg",
            model="linear",
            beta=0.0,
            lr=0.5,
            batch_size="full",
            steps=40,
            eval_every=5,
            schedule=schedule,
        )
    )
    losses = {row["step"]: row["val_loss"] for row in result.curves}
    assert losses[20] < 0.9 * losses[10]
    assert losses[25] == pytest.approx(losses[40], rel=1e-6)


def test_callback_sees_every_evaluation_and_the_outcome_last():
    events = []
    run_trial(config(steps=50, eval_every=20, seeds=(5, 6)), callback=events.append)
    assert [(e["seed"], e["seed_index"], e["step"]) for e in events] == [
        (s, i, step) for i, s in enumerate((5, 6)) for step in (0, 20, 40, 50)
    ]
    assert [e["outcome"] for e in events if e["step"] < 50] == [None] * 6
    assert [e["outcome"] for e in events if e["step"] == 50] == ["converged"] * 2
    assert all(math.isfinite(e["val_loss"]) for e in events)


def test_callback_errors_propagate_instead_of_becoming_error_runs():
    def stop(event):
        if event["step"] == 20:
            raise KeyError("stop requested")

    with pytest.raises(KeyError, match="stop requested"):
        run_trial(config(), callback=stop)


def test_an_error_in_one_seed_is_recorded_and_the_other_seeds_still_run(monkeypatch):
    real_build_model = trial_module.build_model

    def build_model(*args, **kwargs):
        model = real_build_model(*args, **kwargs)
        if torch.initial_seed() == 1:  # the runner seeds torch before building
            calls = {"n": 0}

            def fail_on_fifth_training_forward(module, inputs):
                if module.training:
                    calls["n"] += 1
                    if calls["n"] == 5:
                        raise RuntimeError("boom")

            model.register_forward_pre_hook(fail_on_fifth_training_forward)
        return model

    monkeypatch.setattr(trial_module, "build_model", build_model)
    result = run_trial(config(seeds=(0, 1, 2)))
    ok0, failed, ok2 = result.records
    assert ok0["outcome"] == ok2["outcome"] == "converged"
    assert failed["outcome"] == "error"
    assert failed["error"] == "RuntimeError: boom"
    assert failed["steps_done"] == 4
    assert math.isfinite(failed["initial_loss"])
    assert failed["objective"] == failed["initial_val_loss"]  # failed: as untrained
    assert result.objective == pytest.approx(
        (ok0["final_val_loss"] + failed["initial_val_loss"] + ok2["final_val_loss"]) / 3
    )
    assert [c["step"] for c in result.curves if c["run_id"] == "local-s1"] == [0]


def test_an_error_before_the_initial_model_leaves_that_seed_out_of_the_mean(monkeypatch):
    real_apply_init = trial_module.apply_init

    def apply_init(model, scheme, **kwargs):
        if torch.initial_seed() == 1:
            raise FloatingPointError("bad init")
        real_apply_init(model, scheme, **kwargs)

    monkeypatch.setattr(trial_module, "apply_init", apply_init)
    result = run_trial(config(seeds=(0, 1)))
    ok, failed = result.records
    assert failed["outcome"] == "error" and math.isnan(failed["initial_val_loss"])
    assert math.isnan(failed["objective"])  # nothing measured: missing, not a number
    assert result.objective == ok["objective"] == ok["final_val_loss"]


def test_augment_runs_on_every_training_batch_from_the_seed_generator(monkeypatch):
    real_load = trial_module.load_dataset
    calls = []

    def noisy(x, generator):
        calls.append(x.shape[0])
        return x + 0.1 * torch.randn(x.shape, generator=generator, device=x.device)

    def load_dataset(*args, **kwargs):
        return dataclasses.replace(real_load(*args, **kwargs), augment=noisy)

    monkeypatch.setattr(trial_module, "load_dataset", load_dataset)
    first = run_trial(config(steps=30))
    assert len(calls) == 30 and calls[0] == 128
    again = run_trial(config(steps=30))
    assert metrics(again.records[0]) == metrics(first.records[0])
    monkeypatch.undo()
    plain = run_trial(config(steps=30))
    assert plain.records[0]["final_train_loss"] != first.records[0]["final_train_loss"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("optimizer", "lion", "unknown optimizer 'lion'"),
        ("model", "vit", "unknown model 'vit'"),
        ("dataset", "imagenet", "unknown dataset 'imagenet'"),
        ("init", "magic", "unknown init scheme 'magic'"),
        ("objective", "final_val_f1", "objective 'final_val_f1' is not allowed"),
        ("loss", "mse", "loss 'mse' does not fit a classification task"),
        ("model_args", {"depth": 3}, "unknown model argument"),
    ],
)
def test_bad_configuration_raises_user_input_error_before_training(field, value, message):
    events = []
    with pytest.raises(UserInputError, match=message):
        run_trial(config(**{field: value}), callback=events.append)
    assert events == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="only meaningful without a GPU")
def test_cuda_without_a_gpu_is_refused():
    with pytest.raises(UserInputError, match="no CUDA device"):
        run_trial(config(device="cuda"))


def test_threads_are_restored_after_the_trial():
    before = torch.get_num_threads()
    run_trial(config(steps=5, threads=1))
    assert torch.get_num_threads() == before


def test_a_nonfinite_initial_loss_is_a_divergence_at_step_0(monkeypatch):
    real_build_model = trial_module.build_model

    def build_model(*args, **kwargs):
        model = real_build_model(*args, **kwargs)
        model.register_forward_hook(lambda module, inputs, out: out * math.nan)
        return model

    monkeypatch.setattr(trial_module, "build_model", build_model)
    record = run_trial(config()).records[0]
    assert (record["outcome"], record["diverged_step"]) == ("diverged", 0)
    assert record["divergence_cause"] == "nonfinite"
    assert record["steps_done"] == 0
    # the untrained model itself is NaN: its loss is missing, so is the objective
    # (Optuna is told FAIL), and its accuracy is class 0's frequency
    assert math.isnan(record["initial_val_loss"]) and math.isnan(record["objective"])
    class0 = float((load_dataset("digits").y_val == 0).double().mean())
    assert record["initial_val_acc"] == pytest.approx(class0)


@pytest.mark.gpu
def test_cuda_run_trains_with_data_and_generators_on_the_gpu():
    result = run_trial(config(device="auto", threads=None, steps=100, seeds=(0, 1)))
    assert [r["outcome"] for r in result.records] == ["converged", "converged"]
    again = run_trial(config(device="cuda", threads=None, steps=100, seeds=(0,)))
    assert again.records[0]["final_train_loss"] == pytest.approx(
        result.records[0]["final_train_loss"], rel=1e-3
    )


def test_a_stopped_trial_records_every_seed_as_pruned_with_its_partial_curve():
    from robustness.runner import TrialStopped

    events = []

    def stop_at_seed_1_step_40(event):
        events.append(event)
        if (event["seed_index"], event["step"]) == (1, 40):
            raise TrialStopped

    result = run_trial(config(seeds=(0, 1, 2), steps=80), callback=stop_at_seed_1_step_40)
    done, stopped, never = result.records
    assert result.stopped
    assert done["outcome"] == "converged" and done["steps_done"] == 80
    # the stopped seed: its curve up to the step it reached, its values there
    assert (stopped["outcome"], stopped["steps_done"]) == ("pruned", 40)
    curve = [c for c in result.curves if c["run_id"] == "local-s1"]
    assert [c["step"] for c in curve] == [0, 20, 40]
    assert stopped["final_val_loss"] == curve[-1]["val_loss"]
    assert math.isnan(stopped["final_train_loss"])  # measured only at the end
    assert stopped["objective"] == min(curve[-1]["val_loss"], stopped["initial_val_loss"])
    # the seed never started: a record, nothing measured
    assert (never["outcome"], never["steps_done"], never["seed"]) == ("pruned", 0, 2)
    assert math.isnan(never["initial_loss"]) and math.isnan(never["objective"])
    assert [c for c in result.curves if c["run_id"] == "local-s2"] == []
    assert result.objective == pytest.approx((done["objective"] + stopped["objective"]) / 2)
    # events carry the step-0 values the scheduler's reports are capped with
    assert events[-1]["initial_val_loss"] == stopped["initial_val_loss"]
