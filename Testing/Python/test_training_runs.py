"""Run folders: resumed only by the same run (anything else refused, naming what differs; --fresh moves
the old run aside), an interrupt saves a checkpoint at the step reached, every step is logged once,
every invocation is recorded; the inspect figure names its weight set and labels its axes."""

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import tensorflow as tf

from DIRVNetLib.cli.main import main
from DIRVNetLib.io.weights import load_weight_set
from DIRVNetLib.training.config import load_run, read_run
from DIRVNetLib.training.plots import activation_figure
from DIRVNetLib.training.runs import RECORD
from DIRVNetLib.training.trainer import Trainer, train

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "ndim": 2,
    "levels": 2,
    "units": 1,
    "control_spacing": 4,
    "data_filters": 2,
    "data_kernel": 3,
    "reg_filters": 2,
    "reg_kernel": 3,
}
RUN = {
    "network": TINY,
    "data": {"patch_shape": [32, 32], "max_magnitude": 2.0, "sources": ["chessboard"]},
    "steps": 4,
    "batch_size": 1,
    "learning_rate": 0.01,
    "seed": 0,
    "checkpoint_every": 100,
    "validation": {"pairs": 0},
    "tensorboard": False,
}


def _steps(folder):
    with open(folder / "losses.csv", newline="") as handle:
        return [int(row["step"]) for row in csv.DictReader(handle)]


def _segments(folder):
    with open(folder / "segments.csv", newline="") as handle:
        return [(int(r["from_step"]), int(r["to_step"]), r["ended"]) for r in csv.DictReader(handle)]


def test_a_run_folder_is_resumed_only_by_the_same_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(RUN, out, progress=False, stop_at=1) is None
    with pytest.raises(
        ValueError, match=r"holds a different run: run.learning_rate \(0.01 -> 0.02\); run.seed \(0 -> 5\)"
    ):
        train({**RUN, "seed": 5, "learning_rate": 0.02}, out, progress=False)
    with pytest.raises(ValueError, match=r"run.network.units \(1 -> 2\)"):
        train({**RUN, "network": {**TINY, "units": 2}}, out, progress=False)
    with pytest.raises(ValueError, match=r"run.steps \(4 -> 1\)"):
        train({**RUN, "steps": 1}, out, progress=False)
    assert _steps(out) == [1]  # the refused runs left the folder as it was

    # The same run (a new description may be given) resumes and says from where.
    train({**RUN, "description": "renamed"}, out, progress=False)
    assert "from step 1 of 4" in capsys.readouterr().out
    assert _steps(out) == [1, 2, 3, 4] and load_weight_set(out / "weights").description == "renamed"

    # --fresh moves the old run aside and starts again; nothing is lost.
    command = ["train", "--config", str(tmp_path / "other.json"), "--output-dir", str(out), "--no-progress"]
    (tmp_path / "other.json").write_text(json.dumps({**RUN, "seed": 5, "steps": 2}))
    assert main(command) == 2
    assert "use another --output-dir, or --fresh" in capsys.readouterr().err
    assert main(command + ["--fresh"]) == 0
    (aside,) = out.glob("previous-*")
    assert _steps(aside) == [1, 2, 3, 4] and _steps(out) == [1, 2]
    assert json.loads((out / RECORD).read_text())["run"]["seed"] == 5


def test_a_folder_with_unrecorded_training_output_is_refused(tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(ValueError, match=f"holds training output \\(checkpoints\\) but no {RECORD}"):
        train(RUN, tmp_path / "run", progress=False)


def test_an_interrupt_saves_a_checkpoint_and_the_resumed_run_logs_each_step_once(tmp_path, capsys):
    out = tmp_path / "run"
    run = load_run({**RUN, "steps": 400})
    trainer = Trainer(run, out, command="first", progress=False)

    def interrupt_at_step_3():
        while int(trainer.step.numpy()) < 3:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_at_step_3, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    reached = int(trainer.step.numpy())
    assert 3 <= reached < 400
    assert "checkpoint saved at step" in capsys.readouterr().err
    assert tf.train.latest_checkpoint(str(out / "checkpoints")).endswith(f"ckpt-{reached}")
    assert _steps(out) == list(range(1, reached + 1))
    assert _segments(out) == [(0, reached, "interrupted")]

    # A process killed after its last checkpoint leaves log rows beyond it: the resumed run drops them.
    with open(out / "losses.csv", "a") as handle:
        handle.write(f"{reached + 1},9.9\n{reached + 2},9.9\n")
    shorter = load_run({**RUN, "steps": 400})
    resumed = Trainer(shorter, out, command="second", progress=False, stop_at=reached + 2)
    assert int(resumed.step.numpy()) == reached
    resumed.fit()
    assert f"from step {reached} of 400" in capsys.readouterr().out
    assert _steps(out) == list(range(1, reached + 3))
    assert _segments(out) == [(0, reached, "interrupted"), (reached, reached + 2, "stopped")]


def test_the_activation_figure_names_its_weight_set_and_labels_its_axes(tiny_weights, tmp_path, capsys):
    weight_set = load_weight_set(tiny_weights)
    fig = activation_figure(weight_set.weights, weight_set.config, title="tiny2d sha256 0123abcd")
    assert fig._suptitle.get_text().startswith("tiny2d sha256 0123abcd\n")
    axes = fig.axes
    assert axes[0].get_ylabel() == "level 0 phi(x)" and "filter response" in axes[-1].get_xlabel()
    assert [t.get_text() for t in fig.legends[0].get_texts()][:2] == ["filter 1", "filter 2"]
    columns = 2 * weight_set.config.units
    for row in range(2 * weight_set.config.levels):  # data terms of every unit share a y-scale
        limits = {axes[row * columns + 2 * unit].get_ylim() for unit in range(weight_set.config.units)}
        assert len(limits) == 1

    assert main(["inspect", str(tiny_weights), "--figure", str(tmp_path / "a.png")]) == 0
    assert weight_set.metadata["weights_sha256"][:16] in capsys.readouterr().out


RUN_FILES = sorted(ROOT.glob("model_weights/*/train*.json")) + sorted(ROOT.glob("docs/notes/experiments/*.json"))


@pytest.mark.parametrize("path", RUN_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_committed_run_configuration_loads_and_round_trips(path):
    run = read_run(path)
    assert run.data is not None and (run.network is not None or run.init)
    assert load_run(run.to_dict()) == run


@pytest.mark.parametrize("name", ["mr2d", "mr3d"])
def test_the_bundled_weight_sets_record_a_loadable_run(name):
    metadata = json.loads((ROOT / "model_weights" / name / "metadata.json").read_text())
    run = load_run(metadata["training"]["run"])
    assert run.steps == metadata["training"]["steps"]


def test_the_run_loader_names_every_unknown_key_once():
    with pytest.raises(ValueError) as error:
        load_run({**RUN, "stepz": 1, "seeds": 2})
    assert str(error.value).count("stepz") == 1 and "unknown keys in the run configuration: seeds, stepz" in str(
        error.value
    )
    with pytest.raises(ValueError, match=r"unknown keys in 'data.augmentation': blur"):
        load_run({**RUN, "data": {**RUN["data"], "augmentation": {"blur": 1}}})
    with pytest.raises(ValueError, match=r"unknown keys in 'validation': pair"):
        load_run({**RUN, "validation": {"pair": 2}})
    with pytest.raises(ValueError, match="unknown strategy 'tpu'; choose from default, mirrored, multiworker"):
        load_run({**RUN, "strategy": "tpu"})
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        load_run({**RUN, "batch_size": 0})
    assert load_run({**RUN, "tensorboard": True}).tensorboard.enabled
    assert load_run({**RUN, "loss": "ncc", "schedule": "cosine"}).schedule.kind == "cosine"


@pytest.mark.slow
def test_sigterm_to_the_command_saves_a_checkpoint_and_records_the_invocation(tmp_path):
    """The real command in its own process: SIGTERM during training exits with 130 after writing a
    checkpoint at the step reached; the logs agree with it."""
    (tmp_path / "run.json").write_text(json.dumps({**RUN, "steps": 100000, "checkpoint_every": 2}))
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "DIRVNetLib.cli.main",
        "train",
        "--config",
        str(tmp_path / "run.json"),
        "--output-dir",
        str(out),
        "--no-progress",
    ]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.time() + 240
    while not (out / "checkpoints").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    reached = int(err.split("checkpoint saved at step ")[1].split(";")[0])
    assert reached >= 2
    assert tf.train.latest_checkpoint(str(out / "checkpoints")).endswith(f"ckpt-{reached}")
    assert _steps(out) == list(range(1, reached + 1))
    assert _segments(out) == [(0, reached, "interrupted")]
