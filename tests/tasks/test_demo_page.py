"""The demo's page from a small fake results directory: the headline first (one sentence with the key numbers and
one row per task), then the pictures, every one of them on disk, and the full table last, collapsed."""
from __future__ import annotations

import json
import os
import re

import numpy as np

from tasks.demo import demo
from tasks.demo import page as demo_page
from tasks.common.report import row


def fake_rows() -> list[dict]:
    shipped = dict(source="shipped", note="full run")
    trained = dict(source="trained in demo", note="short")
    return [
        row("inr_classification", "encoder_probe_flip", "test_acc", 0.962, 3.0, n=131, **shipped),
        row("inr_classification", "encoder_broken", "test_acc", 0.924, 3.0, n=131, **shipped),
        row("inr_classification", "pixels", "test_acc", 0.893, 5.0, **trained),
        row("inr_classification", "stats_gbm", "test_acc", 0.137, 1.0, **trained),
        row("inr_classification", "flat_mlp", "test_acc", 0.101, 1.0, **trained),
        row("inr_classification", "encoder_probe", "test_acc", 0.990, 9.0, **trained),  # an encoder: no baseline
        row("accuracy_prediction", "encoder", "kendall_tau[test]", 0.672, 2.0, n=30, **shipped),
        row("accuracy_prediction", "encoder", "kendall_tau[all]", 0.658, None, **shipped),
        row("accuracy_prediction", "probe_gbm", "kendall_tau[test]", 0.719, 4.0, **trained),
        row("accuracy_prediction", "probe_gbm", "kendall_tau[resnet]", 0.9, None, **trained),  # another metric
        row("accuracy_prediction", "stats_gbm", "kendall_tau[test]", 0.269, 1.0, **trained),
        row("inr_editing", "encoder", "test_mse", 0.0084, 2.0, n=131, **shipped),
        row("inr_editing", "flat_mlp", "test_mse", 0.0225, 2.0, n=131, **shipped),
        row("inr_editing", "noop", "test_mse", 0.0514, 0.0, **trained),
        row("inr_editing", "flat_mlp", "test_mse", 0.0231, 2.0, **trained),
        row("inr_editing", "encoder", "test_mse", 0.0300, 2.0, **trained),
    ]


def fake_results(workdir) -> tuple[list[dict], list[tuple[str, str]]]:
    """A demo directory as the demo leaves it: results.json and the plots of every figure it links."""
    rows = fake_rows()
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(rows, f)
    figures = [("confusion.png", "the shipped encoder's confusion matrix")]
    demo_page.plot_confusion(np.arange(10), np.arange(10), os.path.join(workdir, "confusion.png"), "accuracy 1.000")
    for task, plots in demo.TASK_FIGURES.items():
        for png, caption in plots:
            os.makedirs(os.path.dirname(os.path.join(workdir, task, png)), exist_ok=True)  # png may be in a subfolder
            with open(os.path.join(workdir, task, png), "wb") as f:
                f.write(b"\x89PNG\r\n\x1a\n")
            figures.append((os.path.join(task, png), caption))
    return rows, figures


def test_the_headline_compares_each_shipped_encoder_with_its_rival_and_the_best_baseline():
    entries = {e["task"]: e for e in demo_page.headline(fake_rows())}
    assert list(entries) == ["INR classification", "accuracy prediction", "INR editing"]
    cls, acc, edit = entries.values()
    assert cls["encoder"] == ("probes + sign flips", 0.962) and cls["rival"] == ("equivariance broken", 0.924)
    assert cls["baseline"] == ("weight statistics + GBM", 0.137)  # not the pixels (reference) nor an encoder
    assert cls["reference"] == ("MLP on the pixels", 0.893) and cls["meaning"] == "accuracy on 131 test INRs"
    assert acc["baseline"] == ("probe outputs + GBM", 0.719) and acc["rival"] is None
    assert edit["baseline"] == ("MLP on the flat weights", 0.0231)  # lower is better: the smaller MSE
    assert edit["reference"] == ("unedited INR", 0.0514)
    table = demo_page.format_headline(fake_rows()).splitlines()
    assert len(table) == 2 + 3 and "| **0.962** (probes + sign flips) | 0.924 (equivariance broken) |" in table[2]
    assert "0.0084" in table[4] and "lower is better" in table[4]


def test_the_page_leads_with_the_headline_and_every_picture_resolves(tmp_path, capsys):
    workdir = str(tmp_path / "demo")
    rows, figures = fake_results(workdir)
    figures.append(("inr_editing/never_written.png", "a plot the run did not write"))
    path = demo_page.write_index(os.path.join(workdir, "index.html"), "nngraph demo", "what the rows are", rows,
                                 figures, seconds=187.0)
    assert "never_written.png" in capsys.readouterr().out  # named, and left out of the page
    page = open(path).read()
    body = page[page.index("<body>"):]
    sentence = re.search(r'<p class="headline">(.*?)</p>', body).group(1)
    assert sentence.startswith("In 187 s, nngraph scored its shipped encoders")
    for number in ("0.962", "0.137", "0.672", "0.719", "0.0084", "0.0231"):
        assert number in sentence, number
    # the headline sentence, then its table, then the pictures, then every row in a collapsed table
    order = [body.index(s) for s in ('<p class="headline">', '<table class="headline">', "<figure>", "<details>")]
    assert order == sorted(order)
    headline_table = body[order[1]:body.index("</table>", order[1])]
    assert headline_table.count("<tr>") == 1 + 3 and "<b>0.962</b>" in headline_table
    assert body[order[3]:].count("<tr>") == 1 + len(rows)
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == len(figures) - 1 and "inr_editing/edits_fine.png" in sources
    assert all(os.path.isfile(os.path.join(workdir, src)) for src in sources), sources
    assert page.count("<figcaption>") == len(sources)


def test_update_docs_writes_the_table_from_the_results(tmp_path):
    workdir = tmp_path / "demo"
    rows, _ = fake_results(str(workdir))
    (tmp_path / "docs").mkdir()
    doc = tmp_path / demo_page.DEMO_DOC
    begin, end = demo_page.DEMO_TABLE_BEGIN, demo_page.DEMO_TABLE_END
    doc.write_text(f"# Results\n\n{begin}\nold table\n{end}\n\nafter\n")
    table = demo_page.update_docs(str(workdir), root=str(tmp_path))
    text = doc.read_text()
    assert "old table" not in text and f"{begin}\n{table}\n{end}" in text
    assert text.endswith("\n\nafter\n") and table == demo_page.format_headline(rows)
    assert json.load(open(tmp_path / demo_page.DEMO_RESULTS)) == rows
