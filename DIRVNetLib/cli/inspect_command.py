"""``dirvnet inspect WEIGHTS``: a text summary of a weight set and a figure of its learned activation
functions and potentials (per level and unit)."""

from pathlib import Path


def add_parser(commands):
    parser = commands.add_parser("inspect", help="summarise a weight set and plot its learned activations")
    parser.add_argument("weights", help="weight-set folder or bundled name (e.g. mr3d)")
    parser.add_argument("--figure", help="PNG to write (default: NAME-activations.png in the current folder)")
    parser.set_defaults(run=run)


def summary(weight_set):
    """Lines describing ``weight_set``: identity, architecture, parameters, step sizes, training."""
    import numpy as np

    c = weight_set.config
    meta = weight_set.metadata
    count = sum(int(np.size(v)) for v in weight_set.weights.values())
    lines = [
        f"weight set   {weight_set.name}  ({weight_set.path})",
        f"dimension    {c.ndim}D",
        f"description  {weight_set.description or '-'}",
        f"network      {c.levels} levels x {c.units} units, control spacing {c.control_spacing}, "
        f"data {c.data_filters} x {c.data_kernel}^{c.ndim}, regulariser {c.reg_filters} x {c.reg_kernel}^{c.ndim}, "
        f"{c.activation} activations ({c.knots} knots, ranges {c.data_range:g}/{c.reg_range:g})",
        f"parameters   {count:,}",
        f"size rule    axes padded to multiples of {c.size_multiple} (at least {c.min_size})",
    ]
    for level in range(c.levels):
        alphas = [abs(float(weight_set.weights[f"level{level}/unit{u}/alpha"])) for u in range(c.units)]
        lines.append(f"step sizes   level {level}: " + " ".join(f"{a:.3g}" for a in alphas))
    training = meta.get("training") or {}
    if training:
        final = training.get("final_loss", training.get("final_loss_voxels"))
        lines.append(f"training     {training.get('steps', '?')} steps; final loss {final}")
        if training.get("command"):
            lines.append(f"command      {training['command']}")
        if training.get("init"):
            init = training["init"]
            lines.append(f"fine-tuned   from {init.get('path')} (sha256 {str(init.get('sha256', '?'))[:16]}...)")
        if training.get("data", {}).get("folder"):
            lines.append(f"trained on   image pairs in {training['data']['folder']}")
        validation = training.get("validation") or {}
        figures = {k: v for k, v in validation.items() if isinstance(v, (int, float)) and k != "pairs"}
        if figures:
            lines.append(
                f"validation   {validation.get('pairs', '?')} pairs: "
                + ", ".join(f"{k} {v:.4g}" for k, v in sorted(figures.items()))
            )
    lines.append(f"library      {meta.get('library_version', '?')}; weights sha256 {checksum(weight_set)[:16]}...")
    return lines


def checksum(weight_set):
    """The weight set's recorded checksum ("?" when none is recorded)."""
    return str(weight_set.metadata.get("weights_sha256", "?"))


def run(args):
    from DIRVNetLib.io.atomic import atomic_path
    from DIRVNetLib.io.weights import load_weight_set, resolve
    from DIRVNetLib.training.plots import activation_figure, figure_png

    weight_set = load_weight_set(resolve(args.weights, None))
    figure = Path(args.figure) if args.figure else Path(f"{weight_set.name}-activations.png")
    title = f"{weight_set.name} ({weight_set.path}), weights sha256 {checksum(weight_set)[:16]}"
    png = figure_png(activation_figure(weight_set.weights, weight_set.config, title=title), dpi=100)
    figure.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(figure) as tmp:
        Path(tmp).write_bytes(png)
    print("\n".join(summary(weight_set)))
    print(f"figure       {figure}")
