"""The initial weight set of docs/notes/experiments/mr2d-stage3-levels4.json: a 4-level network whose levels
0-2 (finest first) hold the bundled mr2d's parameters and whose new, coarsest level 3 starts as every
untrained network does (quadratic penalties, a plain gradient scheme).

    python docs/notes/experiments/mr2d-levels4-init.py runs/mr2d-levels4-init
"""

import dataclasses
import sys

from DIRVNetLib.io.weights import load_weight_set, resolve, save_weight_set
from DIRVNetLib.model import DIRVNet


def main(output):
    bundled = load_weight_set(resolve("mr2d", 2))
    config = dataclasses.replace(bundled.config, levels=4)
    weights = DIRVNet(config).get_weights()
    for name, value in bundled.weights.items():  # level{0,1,2}/unit{u}/...: same names and shapes
        weights[name] = value
    save_weight_set(
        output,
        config,
        weights,
        f"mr2d (sha256 {bundled.metadata['weights_sha256'][:16]}...) with a fourth, coarsest level at its start",
        {"command": f"python docs/notes/experiments/mr2d-levels4-init.py {output}"},
    )


if __name__ == "__main__":
    main(sys.argv[1])
