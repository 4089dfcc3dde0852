"""The benchmark report: markdown tables (accuracy and smoothness; speed) and a PNG of accuracy
against time."""

import math

COLUMNS = (  # (key, header, format)
    ("seconds", "time s (median)", "{:.2f}"),
    ("epe_mean_mm", "EPE mean mm", "{:.2f}"),
    ("epe_p95_mm", "EPE p95 mm", "{:.2f}"),
    ("dice_mean", "Dice", "{:.3f}"),
    ("hd95_mean_mm", "HD95 mm", "{:.2f}"),
    ("jacobian_nonpositive_percent", "J<=0 %", "{:.3f}"),
    ("std_log_jacobian", "std log J", "{:.3f}"),
    ("ncc_after", "NCC after", "{:.3f}"),
)


def _fmt(value, pattern):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return pattern.format(value)


def _case_header(row, cases):
    info = cases.get(row["case"], {})
    mark = " (seen in training)" if info.get("seen_in_training") else ""
    return f"{row['case']}{mark}"


def accuracy_table(rows, cases):
    """Markdown: one row per case and method; skipped/failed rows point to their reason, listed once
    under the table."""
    lines = ["| case | method | " + " | ".join(h for _, h, _ in COLUMNS) + " |", "|---|---|" + "---:|" * len(COLUMNS)]
    reasons = []
    last_case = None
    for row in rows:
        if row["case"] != last_case:
            info = cases.get(row["case"], {})
            identity = info.get("identity", {})
            before = [
                f"EPE {identity['epe_mean_mm']:.2f} mm" if identity.get("epe_mean_mm") is not None else "",
                f"Dice {identity['dice_mean']:.3f}" if identity.get("dice_mean") is not None else "",
                f"NCC {identity['ncc_after']:.3f}" if identity.get("ncc_after") is not None else "",
            ]
            before = ", ".join(b for b in before if b)
            lines.append(
                f"| {_case_header(row, cases)} | *{info.get('describe', '')}; before: {before}* |" + " |" * len(COLUMNS)
            )
        last_case = row["case"]
        label = row.get("label") or row["method"]
        if row.get("status") != "ok":
            reason = str(row.get("reason", "")).replace("|", "/").replace("\n", " ")
            if reason not in reasons:
                reasons.append(reason)
            lines.append(
                f"| | {label} | {row.get('status', 'failed')} [{reasons.index(reason) + 1}] |"
                + " |" * (len(COLUMNS) - 1)
            )
            continue
        cells = [_fmt(row.get(k), f) for k, _, f in COLUMNS]
        if row.get("runs", 1) != 1:
            cells[0] += f" (n={row['runs']})"
        lines.append(f"| | {label} | " + " | ".join(cells) + " |")
    notes = "".join(f"\n\n[{n}] {reason}" for n, reason in enumerate(reasons, 1))
    return "\n".join(lines) + notes


def speed_table(rows):
    """Markdown: time per stage, warm-up time and peak memory of every successful row."""
    lines = [
        "| case | method | total s | stages (median s) | warm-up s | peak RSS MiB |",
        "|---|---|---:|---|---:|---:|",
    ]
    for row in rows:
        if row.get("status") != "ok":
            continue
        stages = ", ".join(f"{k} {v:.2f}" for k, v in row.get("stages", {}).items())
        lines.append(
            f"| {row['case']} | {row.get('label') or row['method']} | {row['seconds']:.2f} | {stages} | "
            f"{_fmt(row.get('warmup_seconds'), '{:.1f}')} | {_fmt(row.get('peak_rss_mib'), '{:.0f}')} |"
        )
    return "\n".join(lines)


def markdown(rows, cases, machine, command):
    """The whole report as markdown."""
    machine_lines = "\n".join(f"- {k}: {v}" for k, v in machine.items())
    return (
        f"# DIRV-Net benchmark\n\nCommand: `{command}`\n\nMachine:\n{machine_lines}\n\n"
        "## Accuracy and smoothness\n\n"
        "EPE: end-point error against the known field (inside the case's mask); Dice/HD95: mean over labels; "
        "J<=0: folding; std log J over J > 0. *before* = identity transform.\n\n"
        f"{accuracy_table(rows, cases)}\n\n## Speed\n\n"
        "Median wall time of one registration with both images in memory, after a warm-up call for methods "
        "with one-off costs; peak RSS is the worker process's peak resident memory during the timed calls, "
        "libraries included.\n\n"
        f"{speed_table(rows)}\n"
    )


def plot(rows, path):
    """PNG: accuracy against median time, one panel for EPE (cases with a known field) and one for
    Dice (cases with labels and no known field), one colour per method, one marker per case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.get("status") == "ok"]
    panels = [
        (
            "epe_mean_mm",
            "mean EPE (mm, log scale), lower is better",
            [r for r in ok if r.get("epe_mean_mm") is not None],
        ),
        (
            "dice_mean",
            "mean Dice, higher is better",
            [r for r in ok if r.get("dice_mean") is not None and r.get("epe_mean_mm") is None],
        ),
    ]
    panels = [p for p in panels if p[2]] or panels[:1]
    methods = sorted({r["method"] for r in ok})
    cases = sorted({r["case"] for r in ok})
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    markers = {c: "osD^v<>pP*Xh"[i % 12] for i, c in enumerate(cases)}
    figure, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.8), squeeze=False)
    for axis, (key, title, data) in zip(axes[0], panels):
        for r in data:
            axis.scatter(r["seconds"], r[key], color=colours[r["method"]], marker=markers[r["case"]], s=50)
        axis.set_xscale("log")
        if key == "epe_mean_mm" and all(r[key] > 0 for r in data):
            axis.set_yscale("log")
        axis.set_xlabel("wall time per registration (s, median, log scale)")
        axis.set_ylabel(title)
        axis.grid(True, which="both", alpha=0.3)
    handles = [
        plt.Line2D(
            [],
            [],
            color=colours[m],
            marker="o",
            linestyle="",
            label=next((r.get("label") for r in ok if r["method"] == m), m),
        )
        for m in methods
    ]
    handles += [plt.Line2D([], [], color="grey", marker=markers[c], linestyle="", label=c) for c in cases]
    axes[0][-1].legend(handles=handles, fontsize=7, loc="best")
    figure.suptitle("accuracy against time")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def from_results(path):
    """The markdown report re-rendered from a ``results.json`` written by ``dirvnet benchmark``."""
    import json
    from pathlib import Path

    results = json.loads(Path(path).read_text())
    return markdown(results["rows"], results["cases"], results["machine"], results["command"])
