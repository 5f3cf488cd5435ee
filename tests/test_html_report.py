"""report.html of runs and grids, ``fusionkit report`` re-rendering and comparing, escaping, bad folders."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from core_fixtures import fk_env  # noqa: F401
from report_fixtures import cli, make_grid, make_run

HOSTILE = 'small <script>alert("x")</script> & co'


@pytest.fixture
def run_dir(fk_env, tmp_path) -> Path:
    return make_run(tmp_path / "runs" / "a", name=HOSTILE)


def test_run_writes_a_self_contained_report(run_dir):
    page = (run_dir / "report.html").read_text()
    m = json.loads((run_dir / "metrics.json").read_text())
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; co" in page
    assert page.count('src="data:image/png;base64,') == 3  # confusion, recall, per-fold plots carried inside
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched from the network
    # headline figures, per fold and per class, as in metrics.json
    uar = m["summary"]["uar"]
    assert f"{uar['mean']:.3f}" in page and f"{uar['ci95'][0]:.3f} to {uar['ci95'][1]:.3f}" in page
    fold_rows = re.findall(r"<tr><td>0</td><td>(\d+)</td>", page.split('id="fold-table"')[1])
    assert [int(f) for f in fold_rows] == [f["fold"] for f in m["folds"]]
    for name in ("Protocol", "Per class", "Confusion matrix", "Skipped clips", "Resolved recipe",
                 "speaker-independent"):
        assert name in page
    assert "n_estimators: 10" in page  # the resolved recipe


def test_report_command_rerenders_the_same_page(run_dir):
    written = (run_dir / "report.html").read_text()
    (run_dir / "report.html").unlink()
    result = cli("report", run_dir)
    assert result.exit_code == 0, result.output
    assert (run_dir / "report.html").read_text() == written


def test_comparison_page_highlights_recipe_differences(fk_env, run_dir, tmp_path):
    other = make_run(tmp_path / "runs" / "b", fusion__options__n_estimators=20)
    out = tmp_path / "cmp.html"
    result = cli("report", run_dir, other, "--out", out)
    assert result.exit_code == 0, result.output
    page = out.read_text()
    differing = page.split('id="recipe-diff"')[1].split("</table>")[0]
    assert re.search(r'<tr class="diff"><td>fusion\.options\.n_estimators</td>\s*<td>10</td>\s*<td>20</td>', differing)
    assert "data.dataset" not in differing and "data.dataset" in page  # shared fields listed apart
    uars = [json.loads((d / "metrics.json").read_text())["uar"] for d in (run_dir, other)]
    row = page.split("<tr><td>uar</td>")[1].split("</tr>")[0]
    assert [f"{u:.3f}" for u in uars] == re.findall(r">\s*(\d\.\d{3}) &plusmn;", row)
    # the same test clips: R2 against R1 with a speaker-bootstrap interval (same as the metrics' own function)
    from fusionkit.metrics import paired_uar_difference
    from fusionkit.report_html.reading import read_predictions

    first, second = (read_predictions(d / "predictions.csv") for d in (run_dir, other))
    d = paired_uar_difference(second, first)
    paired = page.split('id="paired-table"')[1].split("</table>")[0]
    assert f"{d['diff']:+.3f}" in paired and f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]" in paired


def test_grid_page_from_results_csv(tmp_path):
    fields = ["cell", "dataset", "encoders", "head", "seeds", "status", "uar", "uar_std", "wa", "macro_f1",
              "weighted_f1", "n_clips", "folds", "computed", "encode_s", "fit_s", "peak_mb", "error"]
    rows = [["c1", "ravdess", "<b>enc</b>", "linear", "0", "done", "0.61", "0.02", "0.6", "0.6", "0.6", "10", "2",
             "0", "0", "1", "100", ""],
            ["c2", "ravdess", "enc", "xgb", "0", "done", "0.72", "0.03", "0.7", "0.7", "0.7", "10", "2", "0", "0", "1",
             "100", ""],
            ["c3", "emodb", "enc", "xgb", "0", "failed", "", "", "", "", "", "", "", "", "", "", "", "ValueError: no"]]
    with open(tmp_path / "results.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([fields, *rows])
    result = cli("report", tmp_path)
    assert result.exit_code == 0, result.output
    page = (tmp_path / "report.html").read_text()
    best = page.split('id="best-table"')[1].split("</table>")[0]
    assert "0.720" in best and "0.610" not in best and "emodb" not in best
    assert "&lt;b&gt;enc&lt;/b&gt;" in page and "<b>enc</b>" not in page
    assert page.count('<tr class="failed">') == 1 and "ValueError: no" in page
    assert "no image in the folder" in page  # no heatmap here: said, not broken


def test_bench_writes_grid_report(fk_env, tmp_path):
    out = make_grid(tmp_path)
    page = (out / "report.html").read_text()
    assert page.count('class="sortable" id="cells-table"') == 1
    assert "tiny-grid" in page and 'src="data:image/png;base64,' in page
    assert len(re.findall(r'<a href="cells/[^"]+/report.html">cell</a>', page)) == 2
    for cell in (out / "cells").iterdir():
        assert (cell / "report.html").is_file()


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "neither a run folder (metrics.json) nor a grid folder (results.csv)"),
    (lambda d: (d / "metrics.json").write_text("{oops"), "metrics.json: unreadable"),
    (lambda d: (d / "metrics.json").write_text("{}"), "metrics.json: not a run's metrics"),
])
def test_bad_folder_is_one_line_and_exit_2(tmp_path, setup, message):
    setup(tmp_path)
    result = cli("report", tmp_path)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and str(tmp_path) in lines[0]


def _summary_metrics(uar: float, **pooled) -> dict:
    scores = {k: {"mean": uar, "std": 0.01, "ci95": [uar, uar], "n": 4} for k in ("uar", "wa", "macro_f1",
                                                                               "weighted_f1")}
    return {"recipe": "r", "summary": scores, "folds": [], "protocol": {}, "n_clips": 8, **pooled}


def test_comparison_metrics_are_one_row_each_and_ties_at_the_shown_precision_are_all_best():
    from fusionkit.report_html.compare_page import _metric_rows

    rows = _metric_rows([_summary_metrics(0.7652777777777776, uar_pooled=0.5),
                         _summary_metrics(0.7652777777777778, uar_pooled=0.5004),
                         _summary_metrics(0.70, uar_pooled=0.49)])
    names = [r["name"] for r in rows]
    assert names == ["uar", "wa", "macro_f1", "weighted_f1", "uar_pooled"]  # each once, single seed or not
    uar = {r["name"]: [c["best"] for c in r["cells"]] for r in rows}
    assert uar["uar"] == [True, True, False]  # 0.765 and 0.765: both highlighted
    assert uar["uar_pooled"] == [True, True, False]  # 0.500 and 0.500 (0.5004) read the same


def _fake_run(folder: Path, seeds: list[int], uar: float) -> Path:
    """A run folder with just what a comparison reads: metrics.json and predictions.csv (16 clips, 4 speakers)."""
    folder.mkdir(parents=True)
    m = {**_summary_metrics(uar), "classes": ["a", "b"],
         "protocol": {"corpus": "c", "split_description": "2 folds", "seeds": seeds}}
    (folder / "metrics.json").write_text(json.dumps(m))
    with open(folder / "predictions.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["clip_id", "seed", "fold", "speaker", "true", "predicted"])
        for seed in seeds:
            for i in range(16):
                w.writerow([f"c{i}", seed, 0, f"s{i % 4}", "ab"[i % 2], "ab"[(i + (i % (3 + seed) == 0)) % 2]])
    return folder


def test_comparison_pairs_runs_on_the_seeds_they_share(tmp_path):
    one = _fake_run(tmp_path / "one", [0], 0.7)
    two = _fake_run(tmp_path / "two", [0, 1], 0.6)
    other = _fake_run(tmp_path / "other", [5], 0.6)
    out = tmp_path / "cmp.html"
    result = cli("report", one, two, other, "--out", out)
    assert result.exit_code == 0, result.output
    rows = out.read_text().split('id="paired-table"')[1].split("</table>")[0].split("<tr>")[2:]
    assert "not the same test clips" not in rows[0] and re.search(r"<td>0</td>\s*$", rows[0].split("</tr>")[0])
    assert "no seed in common (R1: 0; R3: 5)" in rows[1]


def test_cross_corpus_protocol_shows_training_and_test_class_counts():
    from fusionkit.report_html.run_page import protocol_rows

    p = {"corpus": "ravdess", "test_corpus": "emodb", "n_speakers": 34, "split": {"kind": "cross-corpus"},
         "speaker_independent": True, "seeds": [0], "encoders": [{"plugin": "lld"}], "fusion": {"plugin": "linear"},
         "scoring": "s", "class_counts": {"angry": 192, "sad": 192}, "test_class_counts": {"angry": 127, "sad": 62}}
    rows = dict(protocol_rows({"protocol": p, "n_clips": 573, "classes": ["angry", "sad"]}))
    assert rows["Corpus"].startswith("ravdess (train) -> emodb (test), 573 clips")
    assert rows["Training classes"] == "angry (192), sad (192)" and rows["Test classes"] == "angry (127), sad (62)"
    assert "Classes" not in rows
    p.pop("test_class_counts")
    assert dict(protocol_rows({"protocol": p, "n_clips": 384, "classes": ["angry", "sad"]}))["Classes"] == \
        "angry (192), sad (192)"
