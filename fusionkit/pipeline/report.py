"""report.md and its PNG plots.

Classification: confusion matrix (counts and row percentages), per-class recall (pooled, with
each fold's recall as dots), per-fold scores (with the mean UAR and its 95% interval).
Regression: predicted against true per target, per-fold CCC.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fusionkit.fileio import atomic_write_text

if TYPE_CHECKING:
    from fusionkit.pipeline.folds import Predictions

COLORS = {"uar": "#1f77b4", "wa": "#ff7f0e", "macro_f1": "#2ca02c"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fold_labels(folds: list[dict]) -> list[str]:
    """``fold 3`` (or ``s1 f3`` with several seeds), plus the test speaker when it is one."""
    several = len({f["seed"] for f in folds}) > 1
    out = []
    for f in folds:
        base = f"s{f['seed']} f{f['fold']}" if several else f"fold {f['fold']}"
        spk = f.get("test_speakers") or []
        out.append(f"{base}\n{spk[0]}" if len(spk) == 1 else base)
    return out


def plot_confusion(cm: np.ndarray, classes: list[str], path: Path, title: str) -> None:
    plt = _pyplot()
    cm = np.asarray(cm, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = 1.6 + 0.75 * len(classes)
    fig, ax = plt.subplots(figsize=(size + 1.6, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=40, ha="right")
    ax.set_yticks(range(len(classes)), [f"{c} ({int(n)})" for c, n in zip(classes, cm.sum(axis=1))])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (clips)")
    ax.set_title(title, fontsize=10)
    for i in range(len(classes)):
        for j in range(len(classes)):
            if cm[i, j] == 0:
                continue
            ax.text(j, i, f"{int(cm[i, j])}\n{100 * norm[i, j]:.0f}%", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.55 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_recall(recall: list[float], classes: list[str], path: Path, folds: list[dict] | None = None) -> None:
    """Pooled recall per class as bars; each fold's recall (where the class is in its test set) as dots."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(2.0 + 0.75 * len(classes), 3.8))
    x = np.arange(len(classes))
    ax.bar(x, recall, color="#1f77b4", alpha=0.85, label="pooled over folds")
    for i, r in enumerate(recall):
        ax.text(i, 0.02, f"{r:.2f}", ha="center", va="bottom", fontsize=8, color="white", fontweight="bold")
    if folds and len(folds) > 1:
        rng = np.random.default_rng(0)
        for i in range(len(classes)):
            vals = [f["per_class"]["recall"][i] for f in folds if f["per_class"]["support"][i] > 0]
            ax.scatter(i + rng.uniform(-0.18, 0.18, len(vals)), vals, s=9, color="black", alpha=0.5, zorder=3,
                       label="one fold" if i == 0 else None)
    ax.axhline(1 / max(len(classes), 1), color="grey", ls="--", lw=1, label="chance")
    ax.set_xticks(x, classes, rotation=40, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("recall")
    ax.set_title("per-class recall", fontsize=10)
    ax.legend(fontsize=7, loc="lower right", framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_folds(folds: list[dict], path: Path, keys=("uar", "wa", "macro_f1"), summary: dict | None = None,
               ylabel: str = "score") -> None:
    """Grouped bars per fold; the first key's mean over folds as a line with its 95% interval as a band."""
    plt = _pyplot()
    labels = _fold_labels(folds)
    x = np.arange(len(folds))
    width = 0.8 / len(keys)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.2 + 0.45 * len(folds) * max(1, len(keys) / 2)), 4.0))
    for k, name in enumerate(keys):
        ax.bar(x + (k - (len(keys) - 1) / 2) * width, [f[name] for f in folds], width=width, label=name,
               color=COLORS.get(name))
    if summary and keys[0] in summary and summary[keys[0]]["n"] > 1:
        s = summary[keys[0]]
        ax.axhspan(s["ci95"][0], s["ci95"][1], color="grey", alpha=0.18, lw=0, label=f"{keys[0]} 95% CI")
        ax.axhline(s["mean"], color="black", lw=1, ls="--", label=f"mean {keys[0]} {s['mean']:.3f}")
    ax.set_xticks(x, labels, rotation=60 if len(folds) > 12 else 0, fontsize=7)
    lo = min(0.0, min(f[k] for f in folds for k in keys))
    ax.set_ylim(lo, 1.0)
    ax.set_ylabel(ylabel)
    ax.set_title("per-fold scores", fontsize=10)
    below = (-0.1 if len(folds) <= 12 else -0.25) - (0.06 if any("\n" in lab for lab in labels) else 0)
    ax.legend(fontsize=7, ncol=len(keys) + 2, loc="upper center", bbox_to_anchor=(0.5, below), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_scatter(predictions: Predictions, path: Path, pooled: dict) -> None:
    """Predicted against true, one panel per target."""
    plt = _pyplot()
    targets = predictions.outputs
    fig, axes = plt.subplots(1, len(targets), figsize=(3.6 * len(targets), 3.6), squeeze=False)
    for j, (ax, t) in enumerate(zip(axes[0], targets)):
        y, p = predictions.true[:, j], predictions.predicted[:, j]
        ax.scatter(y, p, s=5, alpha=0.35)
        lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
        ax.plot([lo, hi], [lo, hi], color="grey", ls="--", lw=1)
        ax.set_xlabel(f"true {t}")
        ax.set_ylabel(f"predicted {t}")
        ax.set_title(f"{t}: CCC {pooled[f'ccc_{t}']:.3f}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt_std(s: dict) -> str:
    """The sample std, or n/a for one score (a predefined split: nothing to spread)."""
    return f"{s['std']:.3f}" if s["n"] > 1 else "n/a"


def _fmt_ci(s: dict) -> str:
    return f"{s['ci95'][0]:.3f} to {s['ci95'][1]:.3f}" if s["n"] > 1 else "n/a (one score)"


def _plugin_text(spec: dict, name: str) -> str:
    opts = ", ".join(f"{k}={v}" for k, v in (spec.get("options") or {}).items())
    return f"`{name}`" + (f" ({opts})" if opts else "")


def _excluded_lines(labels: dict) -> list[str]:
    """One line per corpus whose clips were left out by label (outside ``labels.include``, or unlabelled)."""
    out = []
    for role in ("data", "test_data"):
        excluded = (labels.get(role) or {}).get("excluded") or {}
        if excluded:
            out.append(f"- Left out of {role} by label ({sum(excluded.values())} clips): "
                       + ", ".join(f"{k} ({n})" for k, n in excluded.items()) + ".")
    return out


def _header(m: dict) -> list[str]:
    p = m["protocol"]
    corpus = f"**{p['corpus']}**" + (f" (train) -> **{p['test_corpus']}** (test)" if p.get("test_corpus") else "")
    mapping = ", ".join(f"{k} -> {v}" for k, v in (p.get("label_map") or {}).items())
    lines = [
        f"# {m['recipe']}",
        "",
        "## Protocol",
        "",
        f"- Corpus: {corpus}, {m['n_clips']} clips, {p.get('n_speakers', '?')} speakers.",
    ]
    if m.get("task") == "regression":
        lines.append(f"- Task: regression of {', '.join(m['targets'])}.")
    else:
        counts = p.get("class_counts") or {}
        which = "Training classes" if p.get("test_class_counts") else "Classes"
        lines.append(f"- {which} ({len(m['classes'])}): " + ", ".join(
            f"{c} ({counts[c]})" if c in counts else c for c in m["classes"]) + ".")
        if p.get("test_class_counts"):
            lines.append("- Test classes: " + ", ".join(f"{c} ({n})" for c, n in p["test_class_counts"].items()) + ".")
        if mapping:
            lines.append(f"- Label mapping: {mapping}.")
        left = (p.get("labels") or {}).get("left_out") or {}
        if left.get("train_only") or left.get("test_only"):
            names = left.get("train_only", []) + left.get("test_only", [])
            lines.append(f"- Left out (not in both corpora): {', '.join(names)}.")
        lines += _excluded_lines(p.get("labels") or {})
    lines += [
        f"- Split: {p.get('split_description', p['split']['kind'])}; seeds {p['seeds']}; "
        + ("speaker-independent (no speaker on both sides of any fold)." if p["speaker_independent"]
           else f"**NOT speaker-independent**: {p.get('speaker_overlap', '?')} speaker(s) on both sides."),
        *([f"- Features z-scored per {p['normalize']} (each group's own mean and std, no labels used)."]
          if p.get("normalize", "none") != "none" else []),
        f"- Encoders: {'; '.join(_plugin_text(e, e.get('name') or e['plugin']) for e in p['encoders'])}. "
        f"Head: {_plugin_text(p['fusion'], p['fusion']['plugin'])}.",
        f"- Scoring: {p['scoring']}.",
        "",
    ]
    return lines


def _footer(m: dict) -> list[str]:
    p = m["protocol"]
    return [
        "## Embeddings",
        "",
        f"{m['embeddings']['computed']} computed, {m['embeddings']['cached']} from the cache "
        f"({m['embeddings']['cache_dir']}).",
        "",
        "## Metric definitions",
        "",
        *[f"- **{k}**: {v}" for k, v in p["metrics"].items()],
        "",
        f"## Skipped clips ({len(m['skipped'])})",
        "",
        *([f"- `{s_['clip']}`: {s_['reason']}" for s_ in m["skipped"][:200]] or ["None."]),
        *([f"- ... and {len(m['skipped']) - 200} more (see metrics.json)"] if len(m["skipped"]) > 200 else []),
        "",
        *_flagged_lines(m.get("flagged") or []),
    ]


def _flagged_lines(flagged: list[dict]) -> list[str]:
    """Clips used as they are although their audio looks silent or very short (none: no section)."""
    if not flagged:
        return []
    return [f"## Flagged clips ({len(flagged)}): used, but their audio looks silent or very short", "",
            *[f"- `{f['clip']}`: {f['warning']}" for f in flagged[:200]],
            *([f"- ... and {len(flagged) - 200} more (see metrics.json)"] if len(flagged) > 200 else []), ""]


def _raw_lines(m: dict) -> list[str]:
    """A cross-corpus run with normalize: its figures beside those of the same folds without normalisation."""
    raw = m.get("raw")
    if not raw:
        return []
    keys = [k for k in m["summary"] if k in raw][:4]
    cells = " | ".join(f"{m['summary'][k]['mean']:.3f} / {raw[k]:.3f}" for k in keys)
    return [
        f"### Normalised ({m['protocol']['normalize']}) and raw (normalize: none), same folds",
        "",
        "| " + " | ".join(keys) + " |",
        "|" + "---|" * len(keys),
        f"| {cells} |",
        "",
        "Each cell: normalised / raw.",
        "",
    ]


def _seed_lines(m: dict, keys) -> list[str]:
    if "seeds" not in m:
        return []
    per, over = m["seeds"]["per_seed"], m["seeds"]["over_seeds"]
    same = f" Distinct seeds only: {_identical_text(m)}." if _identical(m) else ""
    return [
        "## Over seeds",
        "",
        f"Each seed's figure is the mean over its folds; the spread below is run-to-run variation.{same}",
        "",
        "| seed | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
        *[f"| {s} | " + " | ".join(f"{v[k]:.3f}" for k in keys) + " |" for s, v in per.items()],
        "| mean ± std | " + " | ".join(f"{over[k]['mean']:.3f} ± {over[k]['std']:.3f}" for k in keys) + " |",
        "",
    ]


def _identical(m: dict) -> list[list[int]]:
    """Groups of seeds that gave the same predictions (metrics.json ``seeds.identical``)."""
    return (m.get("seeds") or {}).get("identical") or []


def _identical_text(m: dict) -> str:
    groups = "; ".join("seeds " + ", ".join(map(str, g[:-1])) + f" and {g[-1]}" for g in _identical(m))
    return f"{groups} gave the same predictions, counted once"


def _fmt_boot(m: dict) -> str:
    boot = m.get("uar_pooled_ci95")
    return f"[{boot['ci95'][0]:.3f}, {boot['ci95'][1]:.3f}]" if boot else ""


def _classification_report(run_dir: Path, m: dict) -> list[str]:
    classes = m["classes"]
    pooled = m["pooled"]
    s = m["summary"]
    plot_confusion(np.array(pooled["confusion"]), classes, run_dir / "confusion.png",
                   f"{m['recipe']}: all folds pooled (UAR {m['uar_pooled']:.3f})")
    plot_recall(pooled["per_class"]["recall"], classes, run_dir / "recall.png", m["folds"])
    plot_folds(m["folds"], run_dir / "folds.png", summary=s)
    pc = pooled["per_class"]
    return [
        *_header(m),
        "## Results",
        "",
        "| metric | mean | std | 95% CI |",
        "|---|---|---|---|",
        *[f"| {k} | {s[k]['mean']:.3f} | {_fmt_std(s[k])} | {_fmt_ci(s[k])} |" for k in s],
        f"| uar_pooled | {m['uar_pooled']:.3f} | | {_fmt_boot(m)} |",
        "",
        f"Mean, std (n-1) and 95% t-interval over {s['uar']['n']} fold scores"
        f"{' (folds x seeds)' if len(m['protocol']['seeds']) > 1 and not _identical(m) else ''}"
        f"{f' (folds x distinct seeds: {_identical_text(m)})' if _identical(m) else ''}"
        + (f"; uar_pooled's interval resamples the {m['uar_pooled_ci95']['groups']} test speakers"
           if m.get("uar_pooled_ci95") else "") + ".",
        "",
        *_raw_lines(m),
        *_seed_lines(m, ("uar", "wa", "macro_f1")),
        "## Per class (pooled over folds)",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
        *[f"| {c} | {pc['precision'][i]:.3f} | {pc['recall'][i]:.3f} | {pc['f1'][i]:.3f} | {pc['support'][i]} |"
          for i, c in enumerate(classes)],
        "",
        "![confusion matrix](confusion.png)",
        "",
        "![per-class recall](recall.png)",
        "",
        "## Per fold",
        "",
        "| seed | fold | test speakers | test clips | UAR | WA | macro F1 |",
        "|---|---|---|---|---|---|---|",
        *[f"| {f['seed']} | {f['fold']} | {', '.join(map(str, f['test_speakers']))} | {f['test_size']} | "
          f"{f['uar']:.3f} | {f['wa']:.3f} | {f['macro_f1']:.3f} |" for f in m["folds"]],
        "",
        "![per-fold scores](folds.png)",
        "",
        *_speaker_lines(m),
        *_footer(m),
    ]


def _speaker_lines(m: dict) -> list[str]:
    """The per-speaker table (weakest first), where metrics.json has one (older runs do not)."""
    rows = m.get("per_speaker")
    if not rows:
        return []
    lines = [f"| {r['speaker']} | {r['clips']} | {r['uar']:.3f} | {r['wa']:.3f} |" for r in rows]
    return ["## Per test speaker (all seeds, weakest first)", "", "| speaker | test clips | UAR | WA |",
            "|---|---|---|---|", *lines, ""]


def _regression_report(run_dir: Path, m: dict, predictions: Predictions) -> list[str]:
    targets = m["targets"]
    s = m["summary"]
    keys = ["ccc", *[f"ccc_{t}" for t in targets]] if len(targets) > 1 else [f"ccc_{targets[0]}"]
    plot_scatter(predictions, run_dir / "scatter.png", m["pooled"])
    plot_folds(m["folds"], run_dir / "folds.png", keys=tuple(keys), summary=s, ylabel="CCC")
    return [
        *_header(m),
        "## Results",
        "",
        "| target | CCC | std | 95% CI | Pearson r | RMSE | MAE |",
        "|---|---|---|---|---|---|---|",
        *[f"| {t} | {s[f'ccc_{t}']['mean']:.3f} | {_fmt_std(s[f'ccc_{t}'])} | {_fmt_ci(s[f'ccc_{t}'])} | "
          f"{s[f'pearson_{t}']['mean']:.3f} | {s[f'rmse_{t}']['mean']:.3f} | {s[f'mae_{t}']['mean']:.3f} |"
          for t in targets],
        f"| mean | {s['ccc']['mean']:.3f} | {_fmt_std(s['ccc'])} | {_fmt_ci(s['ccc'])} | | | |",
        "",
        f"CCC pooled over all predictions: {m['ccc_pooled']:.3f}.",
        "",
        *_raw_lines(m),
        *_seed_lines(m, keys),
        "![predicted against true](scatter.png)",
        "",
        "## Per fold",
        "",
        "| seed | fold | test speakers | test clips | " + " | ".join(f"CCC {t}" for t in targets) + " |",
        "|---|---|---|---|" + "---|" * len(targets),
        *[f"| {f['seed']} | {f['fold']} | {', '.join(map(str, f['test_speakers']))} | {f['test_size']} | "
          + " | ".join(f"{f[f'ccc_{t}']:.3f}" for t in targets) + " |" for f in m["folds"]],
        "",
        "![per-fold scores](folds.png)",
        "",
        *_footer(m),
    ]


def write_report(run_dir: Path, m: dict, predictions: Predictions) -> None:
    """Write report.md and its plots into ``run_dir``, from metrics.json's content and the run's predictions."""
    if m.get("task") == "regression":
        lines = _regression_report(run_dir, m, predictions)
    else:
        lines = _classification_report(run_dir, m)
    atomic_write_text(run_dir / "report.md", "\n".join(lines))
