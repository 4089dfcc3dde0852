"""VoxelMorph (PyPI ``voxelmorph``, PyTorch) as a benchmark baseline: its published ``VxmPairwise``
architecture trained on DIRV-Net's synthetic training data with DIRV-Net's training budget.

``python -m DIRVNetLib.comparison.voxelmorph_training --config model_weights/mr2d/train.json --output
benchmarks/voxelmorph/vxm2d.pt [--steps N]`` draws pairs with the same :class:`PairSampler` (same
sources, patch shape, magnitudes, seed), the same number of steps, batch size and learning rate
(Adam), and trains with the same supervision: mean end-point error between VoxelMorph's displacement
and the known field (voxels). The model file holds the state dict, the architecture arguments and
the training record.

VoxelMorph displacements are in voxels with channels in array-axis order ([z, y, x]), pull convention
(``warped = source(x + disp(x))``), which :func:`vxm_to_flow` turns into DIRV-Net's flow layout.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ARCHITECTURE = {"nb_features": [16, 16, 16, 16, 16], "integration_steps": 5}


def multiple_of(nb_features):
    """Every padded axis is a multiple of this: the U-Net halves the grid once per ``nb_features`` entry
    (measured: with 5 entries 64 and 96 run, 48 and 80 fail)."""
    return 2 ** len(nb_features)


def pad_to(array, multiple):
    """``(padded, crop)``: ``array`` edge-padded at the end of each axis to a multiple of ``multiple``, and
    the slices that crop a padded result back."""
    pad = [(0, -n % multiple) for n in array.shape]
    return np.pad(array, pad, mode="edge").astype(np.float32), tuple(slice(0, n) for n in array.shape)


def vxm_to_flow(disp):
    """VoxelMorph displacement ``[ndim, *S]`` -> flow ``[*S, ndim]`` (array component order, voxels)."""
    return np.moveaxis(np.asarray(disp), 0, -1)


def build_model(ndim, architecture=None):
    import voxelmorph as vxm

    architecture = {**ARCHITECTURE, **(architecture or {})}
    return vxm.nn.models.VxmPairwise(
        ndim=ndim,
        source_channels=1,
        target_channels=1,
        nb_features=architecture["nb_features"],
        integration_steps=architecture["integration_steps"],
    )


def load_model(path):
    """``(model in eval mode, padding multiple)`` from a file written by :func:`train`."""
    import torch

    saved = torch.load(str(path), map_location="cpu", weights_only=False)
    model = build_model(saved["ndim"], saved["architecture"])
    model.load_state_dict(saved["state_dict"])
    model.eval()
    return model, multiple_of(saved["architecture"]["nb_features"])


def train(run, output, steps=None, progress=True, command=None):
    """Train VoxelMorph as the DIRV-Net run configuration ``run`` (dict) says; writes ``output`` (.pt)."""
    import torch
    from tqdm import tqdm

    from DIRVNetLib.training.config import load_run
    from DIRVNetLib.training.trainer import build_sampler, network_config

    run = load_run(run)
    config, _ = network_config(run)
    ndim = config.ndim
    steps = int(steps or run.steps)
    batch = run.batch_size
    torch.manual_seed(run.seed)
    sampler = build_sampler(run, config)  # the DIRV-Net run's own data: sources, fields, augmentation
    model = build_model(ndim)
    optimizer = torch.optim.Adam(model.parameters(), lr=float(run.learning_rate))
    losses = []
    started = time.perf_counter()
    for _ in tqdm(range(steps), desc="training VoxelMorph", disable=not progress):
        fixed, moving, field = sampler.batch(batch)  # [B, *S, 1] and [B, *S, N] (voxels, array order)
        to_channels_first = lambda a: torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, -1, 1)))  # noqa: E731
        disp = model(to_channels_first(moving), to_channels_first(fixed))
        loss = torch.sqrt(((disp - to_channels_first(field)) ** 2).sum(dim=1) + 1e-12).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    record = {
        "steps": steps,
        "batch_size": batch,
        "learning_rate": run.learning_rate,
        "data": run.data.to_dict(),
        "loss": "supervised mean end-point error (voxels)",
        "final_loss_mean_last_50": float(np.mean(losses[-50:])),
        "seconds": time.perf_counter() - started,
        "command": command,
    }
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"ndim": ndim, "architecture": ARCHITECTURE, "state_dict": model.state_dict(), "training": record}, str(output)
    )
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description="train VoxelMorph on DIRV-Net's synthetic data and budget")
    parser.add_argument(
        "--config", required=True, help="DIRV-Net run configuration (e.g. model_weights/mr2d/train.json)"
    )
    parser.add_argument("--output", required=True, help="model file to write (vxm2d.pt / vxm3d.pt)")
    parser.add_argument("--steps", type=int, help="override the number of steps (then the budget is not the same)")
    args = parser.parse_args(argv)
    run = json.loads(Path(args.config).read_text())
    record = train(run, args.output, args.steps, command=" ".join(sys.argv))
    print(json.dumps(record, indent=2, default=str))


if __name__ == "__main__":
    main()
