"""Text for a terminal: the results table of a run, the plugin table, sizes. No click, no numpy."""

from __future__ import annotations

import re
from collections import Counter

PLUGIN_COLUMNS = ("kind", "name", "status", "origin")


def protocol_lines(metrics: dict) -> list[str]:
    """The protocol in a few lines, printed above the results."""
    p = metrics["protocol"]
    corpus = p["corpus"] + (f" -> {p['test_corpus']}" if p.get("test_corpus") else "")
    norm = f"; features z-scored per {p['normalize']}" if p.get("normalize", "none") != "none" else ""
    lines = [f"protocol: {corpus}; {p.get('split_description', p['split']['kind'])}; seeds {p['seeds']}{norm}"]
    if metrics.get("task") == "regression":
        lines.append(f"targets: {', '.join(metrics['targets'])} (CCC per target; ccc = their mean)")
    else:
        mapping = ", ".join(f"{k}->{v}" for k, v in (p.get("label_map") or {}).items())
        lines.append(f"classes: {', '.join(p['classes'])}" + (f" (mapped {mapping})" if mapping else ""))
    if not p.get("speaker_independent", True):
        lines.append(f"WARNING: {p.get('speaker_overlap')} speaker(s) appear in both train and test of a fold")
    lines.append("scoring: " + p["scoring"])
    return lines


def _ci_text(s: dict) -> str:
    """The 95% interval of one summary, or why there is none."""
    if s["n"] < 2:
        return "n/a (one score)"
    return f"[{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}]"


def _std_text(s: dict) -> str:
    """The sample std, or n/a for one score (a predefined split: nothing to spread)."""
    return f"{s['std']:.3f}" if s["n"] > 1 else "n/a"


def results_table(metrics: dict) -> str:
    """A run's ``metrics.json`` as the text ``fusionkit run`` prints: protocol, mean/std/CI per metric, recall."""
    s = metrics["summary"]
    if metrics.get("task") == "regression":
        keys = ["ccc", *[f"ccc_{t}" for t in metrics["targets"]], *[f"pearson_{t}" for t in metrics["targets"]]]
        pooled = f"{'ccc_pooled':<16} {metrics['ccc_pooled']:7.3f}"
    else:
        keys = list(s)  # a classification summary holds exactly the headline metrics, in their order
        pooled = f"{'uar_pooled':<16} {metrics['uar_pooled']:7.3f}"
        boot = metrics.get("uar_pooled_ci95")
        if boot:
            pooled += (f"           [{boot['ci95'][0]:.3f}, {boot['ci95'][1]:.3f}]  (resampling the "
                       f"{boot['groups']} test speakers)")
    lines = [
        *protocol_lines(metrics),
        "",
        f"{'metric':<16} {'mean':>7} {'std':>7}   95% CI   (n={s[keys[0]]['n']} folds x seeds)",
        *[f"{k:<16} {s[k]['mean']:7.3f} {_std_text(s[k]):>7}   " + _ci_text(s[k]) for k in keys],
        pooled,
    ]
    if "seeds" in metrics:
        over = metrics["seeds"]["over_seeds"][keys[0]]
        lines.append(f"{keys[0]} over seeds: mean {over['mean']:.3f}, std {over['std']:.3f} "
                     f"({over['n']} distinct seeds, each the mean of its folds)")
        for group in metrics["seeds"].get("identical") or []:
            lines.append("seeds " + ", ".join(map(str, group[:-1])) + f" and {group[-1]} gave the same predictions: "
                         "counted once in the figures above")
    if metrics.get("task") != "regression" and metrics["classes"]:
        rec = metrics["pooled"]["per_class"]["recall"]
        lines.append("recall: " + ", ".join(f"{c} {r:.2f}" for c, r in zip(metrics["classes"], rec)))
    if metrics.get("raw"):
        raw = metrics["raw"]
        lines.append("raw (normalize: none, same folds): " + ", ".join(f"{k} {raw[k]:.3f}" for k in keys if k in raw))
    return "\n".join(lines)


def plugin_table(rows: list[dict]) -> list[str]:
    """``fusionkit plugins list``: a header, then one aligned line per plugin (its reason unless installed)."""
    widths = {k: max([len(k), *(len(str(r[k])) for r in rows)]) for k in PLUGIN_COLUMNS}
    lines = ["  ".join(k.ljust(widths[k]) for k in widths) + "  description"]
    for r in rows:
        line = "  ".join(str(r[k]).ljust(widths[k]) for k in widths)
        detail = r["reason"] if r["status"] != "installed" else r["description"]
        lines.append(f"{line}  {detail}")
    return lines


def size_text(n: float) -> str:
    """A byte count in B, KB, MB or GB (powers of 1000), e.g. ``1.5 MB``."""
    if n < 1000:
        return f"{n:.0f} B"
    for unit in ("KB", "MB"):
        n /= 1000
        if n < 1000:
            return f"{n:.1f} {unit}"
    return f"{n / 1000:.1f} GB"


def _natural(s: str) -> list:
    """Sort key putting ``spk2`` before ``spk10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(s))]


def survey_lines(role: str, survey, labels, shown: int = 10) -> list[str]:
    """What a dataset found under its root, for ``fusionkit validate``: classes, speakers, clips per class per
    speaker, the audio files it could not place (count and the first ``shown``) and the other files.

    ``survey`` has ``root``, ``clips``, ``unplaced`` ((path, reason) pairs) and ``other`` (suffix -> count);
    ``labels`` is the recipe's ``data.labels``: classes are named as a run names them (after ``map``).
    """
    pairs = [(c.speaker, labels.map.get(c.label, c.label)) for c in survey.clips]
    counts = Counter(pairs)
    per_class = Counter(label for _, label in pairs)
    classes, speakers = sorted(per_class, key=_natural), sorted({s for s, _ in pairs}, key=_natural)
    lines = [f"{role}: {len(pairs)} clips, {len(classes)} classes, {len(speakers)} speakers under {survey.root}",
             "classes: " + ", ".join(f"{k} {per_class[k]}" for k in classes),
             "speakers: " + ", ".join(speakers),
             "clips per class per speaker:",
             *_count_table(speakers, classes, counts)]
    left_out = [k for k in classes if labels.include is not None and k not in labels.include]
    if left_out:
        lines.append(f"not in {role}.labels.include (left out of a run): "
                     + ", ".join(f"{k} {per_class[k]}" for k in left_out))
    if survey.unplaced:
        lines.append(f"could not place {len(survey.unplaced)} audio file(s):")
        lines += [f"  {path}: {reason}" for path, reason in survey.unplaced[:shown]]
        if len(survey.unplaced) > shown:
            lines.append(f"  ... and {len(survey.unplaced) - shown} more")
    if survey.other:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(survey.other.items()))
        lines.append(f"other files (not audio, not read): {sum(survey.other.values())} ({kinds})")
    return lines


def _count_table(rows: list[str], columns: list[str], counts: Counter) -> list[str]:
    """An aligned rows x columns table of ``counts[(row, column)]`` with totals; ``-`` for none."""
    header = ["speaker", *columns, "total"]
    body = [[r, *(counts[(r, c)] or "-" for c in columns), sum(counts[(r, c)] for c in columns)] for r in rows]
    body.append(["total", *(sum(counts[(r, c)] for r in rows) for c in columns), sum(counts.values())])
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]
    return ["  " + "  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w)
                             for i, (v, w) in enumerate(zip(line, widths)))
            for line in [header, *body]]
