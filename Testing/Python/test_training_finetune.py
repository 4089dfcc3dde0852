"""Fine-tuning a weight set on a folder of pairs (``dirvnet train --init W --pairs F``), ``dirvnet
inspect``, and the training command's errors on bad input."""

import json

import numpy as np
import pytest

from DIRVNetLib.cli.main import main
from DIRVNetLib.io.weights import load_weight_set
from DIRVNetLib.training.config import load_run
from DIRVNetLib.training.trainer import network_config

from conftest import TINY_NETWORK, write_pairs


def test_finetuning_on_a_folder_of_pairs_changes_the_weights(tmp_path, tiny_weights, t1_slice):
    pairs = write_pairs(tmp_path / "pairs", t1_slice)
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--init",
                str(tiny_weights),
                "--pairs",
                str(pairs),
                "--output-dir",
                str(out),
                "--steps",
                "3",
                "--batch-size",
                "2",
                "--patch-shape",
                "32",
                "32",
                "--no-progress",
            ]
        )
        == 0
    )
    tuned = load_weight_set(out / "weights")
    initial = load_weight_set(tiny_weights)
    assert tuned.config == initial.config
    changed = [n for n in initial.weights if not np.allclose(initial.weights[n], tuned.weights[n])]
    assert len(changed) > len(initial.weights) // 2
    training = tuned.metadata["training"]
    assert training["init"]["path"] == str(tiny_weights)
    assert training["loss"]["similarity"] == "ncc" and training["loss"]["epe"] == 0.0
    assert training["data"]["pairs"] == ["a", "b"] and training["steps"] == 3
    assert "--pairs" in training["command"]
    # its own description and the absolute folder and checksums of what it was tuned on
    assert tuned.description.startswith(f"tiny2d fine-tuned for 3 steps on the image pairs in {pairs.resolve()}")
    assert training["data"]["folder"] == str(pairs.resolve())
    assert [f["path"] for f in training["data_files"]] == [
        str(pairs.resolve() / n) for n in ("a_fixed.nrrd", "a_moving.nii.gz", "b_fixed.nrrd", "b_moving.nii.gz")
    ]
    assert all(len(f["sha256"]) == 64 for f in training["data_files"])
    assert training["init"]["sha256"] and training["init"]["name"] == "tiny2d"
    assert "lncc_after" in training["validation"]


def test_inspect_writes_the_activation_figure_and_a_summary(tmp_path, tiny_weights, capsys):
    figure = tmp_path / "figures" / "activations.png"
    assert main(["inspect", str(tiny_weights), "--figure", str(figure)]) == 0
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 10_000
    text = capsys.readouterr().out
    assert "2 levels x 2 units" in text and "parameters" in text and "step sizes   level 1" in text


def _error(argv, capsys):
    assert main(argv) == 2
    return capsys.readouterr().err


def test_finetuning_may_switch_the_gradient_scheme_but_not_the_architecture(tiny_weights):
    init = str(tiny_weights)
    config, init_set = network_config(
        load_run({"init": init, "network": {**TINY_NETWORK, "image_gradient": "central"}}, need_data=False)
    )
    assert config.image_gradient == "central" and init_set.config.image_gradient == "forward"
    with pytest.raises(ValueError, match="in control_spacing; only centred_activations, image_gradient may change"):
        network_config(
            load_run(
                {"init": init, "network": {**TINY_NETWORK, "control_spacing": 8, "image_gradient": "central"}},
                need_data=False,
            )
        )


def test_training_errors_name_the_problem(tmp_path, tiny_weights, tiny3d_weights, t1_slice, t1_volume, capsys):
    run = {"network": TINY_NETWORK, "data": {"patch_shape": [32, 32], "max_magnitude": 3.0}, "steps": 1}
    out = ["--output-dir", str(tmp_path / "run")]

    def config(**changes):
        path = tmp_path / "run.json"
        path.write_text(json.dumps({k: v for k, v in {**run, **changes}.items() if v is not None}))
        return ["train", "--config", str(path)] + out

    assert "unknown keys in the run configuration: stepz" in _error(config(stepz=3), capsys)
    bad_data = {"patch_shape": [32, 32], "max_magnitud": 3.0}
    assert "unknown keys in 'data': max_magnitud" in _error(config(data=bad_data), capsys)
    assert "unknown loss preset 'ncc2'" in _error(config(loss="ncc2"), capsys)
    assert "unknown schedule kind 'linear'" in _error(config(schedule="linear"), capsys)
    assert "give --config" in _error(["train"] + out, capsys)

    init2d, init3d = str(tiny_weights), str(tiny3d_weights)
    (tmp_path / "empty").mkdir()
    assert "holds no image pairs" in _error(
        ["train", "--init", init2d, "--pairs", str(tmp_path / "empty")] + out, capsys
    )
    pairs = write_pairs(tmp_path / "pairs", t1_slice)
    (pairs / "b_fixed.nrrd").unlink()
    assert "unpaired images: NAME_moving b has no NAME_fixed" in _error(
        ["train", "--init", init2d, "--pairs", str(pairs)] + out, capsys
    )
    (pairs / "b_moving.nii.gz").unlink()
    message = _error(["train", "--init", init3d, "--pairs", str(pairs)] + out, capsys)
    assert "is for 3D images but pairs folder" in message and "holds 2D images" in message
    message = _error(
        config(network=None, data={"patch_shape": [16, 16, 16], "max_magnitude": 2.0})[:3] + ["--init", init2d] + out,
        capsys,
    )
    assert "is for 2D images but patch_shape [16, 16, 16] has 3 axes" in message
    message = _error(config()[:3] + ["--init", init3d] + out, capsys)
    assert "is for 3D images but the run's network is 2D" in message
    message = _error(["train", "--init", init2d, "--pairs", str(pairs), "--loss", "supervised"] + out, capsys)
    assert "the loss needs true fields" in message
    thick_pairs = {"pairs": str(pairs), "patch_shape": [32, 32], "slice_thickness": 2.0}
    message = _error(config(network=None, data=thick_pairs, loss="ncc")[:3] + ["--init", init2d] + out, capsys)
    assert "'slice_thickness' applies to synthetic deformations" in message
    assert "slice_thickness must be >= 1" in _error(config(data={**run["data"], "slice_thickness": 0}), capsys)
    assert not (tmp_path / "run" / "weights").exists()
