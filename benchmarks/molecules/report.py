"""Tables and the FCD-versus-reconstruction figure of the molecule benchmarks, from the committed raw files.

* ``results/{full,small,curve}/*.json`` (``fit_eval.py``): one row per run, then mean ± sd per
  setting and KL weight;
* the FCD/Test of 10,000 prior samples against held-out reconstruction, across KL weights (``curve``
  setting), with the learned prior and with N(0, I) (``results/fcd_vs_reconstruction.png``), beside the
  published MOSES rows (``results/moses_published.json``);
* ``results/prior_choice.json`` and ``results/neighbor_scale.json`` (validation molecules).

Usage, from the repository root::

    python -m benchmarks.molecules.report            # prints Markdown tables, writes the figure
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from benchmarks.molecules.data import RESULTS
from benchmarks.molecules.latent_eval import KEEP

TARGET_COLUMNS = (
    ("epochs", lambda r: r["fit"].get("epochs_trained")),
    ("recon", lambda r: r["eval"]["reconstruction"]["accuracy"]),
    ("FCD learned", lambda r: r["eval"]["prior"].get("learned", {}).get("FCD/Test")),
    ("valid learned", lambda r: r["eval"]["prior"].get("learned", {}).get("valid")),
    ("unique@10k learned", lambda r: r["eval"]["prior"].get("learned", {}).get("unique@10000")),
    ("novelty learned", lambda r: r["eval"]["prior"].get("learned", {}).get("Novelty")),
    ("FCD N(0,I)", lambda r: r["eval"]["prior"]["standard"].get("FCD/Test")),
    ("valid N(0,I)", lambda r: r["eval"]["prior"]["standard"].get("valid")),
    ("nbr Tanimoto w/o self", lambda r: r["eval"]["neighbors"]["tanimoto_mean_excluding_query"]),
    ("nbr = query", lambda r: r["eval"]["neighbors"]["identical_to_query"]),
    ("interp valid", lambda r: r["eval"]["interpolation"]["valid"]),
    ("interp ends rebuilt", lambda r: r["eval"]["interpolation"]["both_ends_reconstruct"]),
)


def _runs(setting: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) | {"_name": p.stem} for p in sorted((RESULTS / setting).glob("*.json"))]


def _fmt(v: Any) -> str:
    return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def runs_table(setting: str) -> str:
    runs = _runs(setting)
    head = "| run | " + " | ".join(c for c, _ in TARGET_COLUMNS) + " |"
    lines = [head, "|---" * (len(TARGET_COLUMNS) + 1) + "|"]
    groups: dict[float, list[list[Any]]] = {}
    for r in runs:
        cells = [get(r) for _, get in TARGET_COLUMNS]
        lines.append(f"| {r['_name']} | " + " | ".join(_fmt(c) for c in cells) + " |")
        groups.setdefault(r["beta"], []).append(cells)
    for beta, rows in sorted(groups.items()):
        if len(rows) < 2:
            continue
        stats = []
        for column in zip(*rows, strict=True):
            values = [float(v) for v in column if v is not None]
            stats.append(f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else "-")
        lines.append(f"| beta {beta:g}, mean ± sd of {len(rows)} seeds | " + " | ".join(stats) + " |")
    return "\n".join(lines)


def curve(setting: str, path: Path) -> str:
    """Mean FCD/Test and reconstruction per KL weight (learned prior and N(0, I)), as a table and a figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_beta: dict[float, list[dict[str, Any]]] = {}
    for r in _runs(setting):
        by_beta.setdefault(r["beta"], []).append(r)
    points = []
    for beta, runs in sorted(by_beta.items()):
        rec = [r["eval"]["reconstruction"]["accuracy"] for r in runs]
        lrn = [r["eval"]["prior"]["learned"]["FCD/Test"] for r in runs if "learned" in r["eval"]["prior"]]
        std = [r["eval"]["prior"]["standard"]["FCD/Test"] for r in runs]
        points.append((beta, len(runs), statistics.mean(rec), statistics.mean(lrn), statistics.mean(std)))
    published = json.loads((RESULTS / "moses_published.json").read_text())
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.plot([p[2] for p in points], [p[3] for p in points], "o-", label="scivae, learned prior (default)")
    ax.plot([p[2] for p in points], [p[4] for p in points], "s--", label="scivae, N(0, I)")
    for beta, _, rec, lrn, std in points:
        ax.annotate(f"β={beta:g}", (rec, lrn), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.annotate(f"β={beta:g}", (rec, std), textcoords="offset points", xytext=(4, 4), fontsize=8)
    for name, row in published["models"].items():
        ax.axhline(row["FCD/Test"], color="grey", lw=0.6, ls=":")
        ax.text(
            0.01,
            row["FCD/Test"],
            f"MOSES {name} {row['FCD/Test']:.3f}",
            fontsize=7,
            va="bottom",
            color="grey",
            transform=ax.get_yaxis_transform(),  # x in axes fraction: the label stays inside the plot
        )
    ax.set_yscale("log")
    ax.set_xlabel("held-out reconstruction (greedy, exact molecule)")
    ax.set_ylabel("FCD/Test of 10,000 prior samples (log scale)")
    ax.set_title("30k MOSES molecules, 37 epochs: mean of the seeds per KL weight β", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    lines = ["| beta | seeds | reconstruction | FCD/Test, learned prior | FCD/Test, N(0, I) |", "|---|---|---|---|---|"]
    lines += [f"| {b:g} | {n} | {rec:.3f} | {lrn:.3f} | {std:.3f} |" for b, n, rec, lrn, std in points]
    return "\n".join(lines)


MOSES_COLUMNS = tuple(k for k in KEEP if k not in ("unique@1000", "IntDiv2"))  # the columns MOSES publishes


def moses_table(setting: str = "full") -> str:
    """The published MOSES rows beside the mean of our seeds (learned prior and N(0, I), default KL weight)."""
    published = json.loads((RESULTS / "moses_published.json").read_text())["models"]
    runs = [r for r in _runs(setting) if r["beta"] == 0.2]
    lines = ["| model | n | " + " | ".join(MOSES_COLUMNS) + " |", "|---" * (len(MOSES_COLUMNS) + 2) + "|"]
    for name, row in published.items():
        lines.append(
            f"| MOSES {name} (published) | 30,000 | " + " | ".join(_fmt(row.get(k)) for k in MOSES_COLUMNS) + " |"
        )
    for prior, label in (("learned", "learned prior (default)"), ("standard", "N(0, I)")):
        got = [r["eval"]["prior"][prior] for r in runs if prior in r["eval"]["prior"]]
        if got:
            means = [statistics.mean(g[k] for g in got) for k in MOSES_COLUMNS]
            lines.append(
                f"| scivae {label}, mean of {len(got)} seeds | 10,000 | " + " | ".join(f"{m:.3f}" for m in means) + " |"
            )
    return "\n".join(lines)


def main() -> None:
    for setting in ("full", "small", "curve"):
        if (RESULTS / setting).is_dir():
            print(f"\n## {setting}\n")
            print(runs_table(setting))
    if (RESULTS / "full").is_dir():
        print("\n## Beside the published MOSES rows (full setting)\n")
        print(moses_table("full"))
    if (RESULTS / "curve").is_dir():
        print("\n## FCD versus reconstruction (curve setting)\n")
        print(curve("curve", RESULTS / "fcd_vs_reconstruction.png"))
    for name in ("prior_choice", "neighbor_scale"):
        path = RESULTS / f"{name}.json"
        if path.exists():
            rows = json.loads(path.read_text())["rows"]
            keys = list(dict.fromkeys(k for r in rows for k in r))
            print(f"\n## {name}\n\n| " + " | ".join(keys) + " |\n" + "|---" * len(keys) + "|")
            for r in rows:
                print("| " + " | ".join(_fmt(r.get(k)) for k in keys) + " |")


if __name__ == "__main__":
    main()
