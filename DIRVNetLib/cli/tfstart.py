"""Starting TensorFlow for a command without its start-up noise on machines without a GPU driver.

TensorFlow's native start-up lines are written before its logging reads ``TF_CPP_MIN_LOG_LEVEL``, and
the "failed call to cuInit ... (303)" line (no CUDA driver library) is logged as an error on every CPU
run; level 3 would hide it but also every real error. So the start is run with stderr captured, and
only the known lines below are dropped; anything else is passed on.
"""

import re
import sys

from DIRVNetLib.io.stderr import captured_stderr

_NOISE = [
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"\S+ [\d:.]+ +\d+ cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine, GPU will not be used\.",
    r"\S+ [\d:.]+ +\d+ cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized to use available CPU "
    r"instructions in performance-critical operations\.",
    r"To enable the following instructions: .*, in other operations, rebuild TensorFlow with the appropriate "
    r"compiler flags\.",
]
_NO_DRIVER = r"\S+ [\d:.]+ +\d+ cuda_platform\.cc:\d+\] failed call to cuInit: .*\(303\)"


def start_tensorflow(device="auto"):
    """Import TensorFlow and list its devices (where it looks for CUDA), dropping the known start-up
    lines from stderr; the missing-driver line is kept when ``device`` is "gpu"."""
    with captured_stderr() as captured:
        import tensorflow as tf

        tf.config.list_physical_devices()
    kept = kept_lines(captured.text, device)
    if kept:
        print("\n".join(kept), file=sys.stderr)


def kept_lines(text, device="auto"):
    """The lines of ``text`` that are not known start-up noise."""
    noise = re.compile("|".join(_NOISE + ([] if device == "gpu" else [_NO_DRIVER])))
    return [line for line in text.splitlines() if line.strip() and not noise.fullmatch(line.strip())]
