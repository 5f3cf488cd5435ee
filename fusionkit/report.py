"""report.md and its PNG plots: confusion matrix, per-class recall, per-fold scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fusionkit.cache import atomic_write_text


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(cm: np.ndarray, classes: list[str], path: Path, title: str) -> None:
    plt = _pyplot()
    cm = np.asarray(cm, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = 1.0 + 0.6 * len(classes)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046, label="row-normalised recall")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_recall(recall: list[float], classes: list[str], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.5 + 0.6 * len(classes), 3.5))
    ax.bar(classes, recall, color="tab:blue")
    ax.axhline(1 / max(len(classes), 1), color="grey", ls="--", lw=1, label="chance")
    ax.set_ylim(0, 1)
    ax.set_ylabel("recall (pooled over folds)")
    ax.tick_params(axis="x", rotation=45)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_folds(folds: list[dict], path: Path) -> None:
    plt = _pyplot()
    labels = [f"s{f['seed']}f{f['fold']}" if len({g['seed'] for g in folds}) > 1 else f"fold {f['fold']}" for f in folds]
    x = np.arange(len(folds))
    fig, ax = plt.subplots(figsize=(2 + 0.5 * len(folds), 3.5))
    for k, (name, off) in enumerate((("uar", -0.2), ("wa", 0.0), ("macro_f1", 0.2))):
        ax.bar(x + off, [f[name] for f in folds], width=0.2, label=name)
    ax.set_xticks(x, labels, rotation=45, ha="right")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("per-fold scores")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(run_dir: Path, m: dict) -> None:
    classes = m["classes"]
    pooled = m["pooled"]
    plot_confusion(np.array(pooled["confusion"]), classes, run_dir / "confusion.png",
                   f"{m['recipe']}: all folds pooled")
    plot_recall(pooled["per_class"]["recall"], classes, run_dir / "recall.png")
    plot_folds(m["folds"], run_dir / "folds.png")
    p = m["protocol"]
    s = m["summary"]
    lines = [
        f"# {m['recipe']}",
        "",
        f"Corpus **{p['corpus']}**, {m['n_clips']} clips, {len(classes)} classes ({', '.join(classes)}).",
        f"Split: **{p['split']['kind']}**, {p['folds']} folds, seeds {p['seeds']}; "
        f"{'speaker-independent' if p['speaker_independent'] else 'NOT speaker-independent (speakers leak)'}.",
        f"Encoders: {', '.join(e.get('name') or e['plugin'] for e in p['encoders'])}; fusion head: {p['fusion']['plugin']}.",
        "",
        "| metric | mean | std | 95% CI |",
        "|---|---|---|---|",
        *[f"| {k} | {s[k]['mean']:.3f} | {s[k]['std']:.3f} | {s[k]['ci95'][0]:.3f} to {s[k]['ci95'][1]:.3f} |" for k in s],
        f"| uar_pooled | {m['uar_pooled']:.3f} | | |",
        "",
        p["scoring"] + ".",
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
        "## Per class (pooled over folds)",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
        *[f"| {c} | {pooled['per_class']['precision'][i]:.3f} | {pooled['per_class']['recall'][i]:.3f} | "
          f"{pooled['per_class']['f1'][i]:.3f} | {pooled['per_class']['support'][i]} |" for i, c in enumerate(classes)],
        "",
        "![confusion matrix](confusion.png)",
        "",
        "![per-class recall](recall.png)",
        "",
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
        *([f"- `{s_['clip']}`: {s_['reason']}" for s_ in m["skipped"]] or ["None."]),
        "",
    ]
    atomic_write_text(run_dir / "report.md", "\n".join(lines))
