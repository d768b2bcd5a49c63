"""`cactus report`: the HTML page from a model and from a predictions file, on real files with a tiny real model; the
page parses, its every SVG is well-formed XML, it fetches nothing, it escapes the data, and a browser renders it."""

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cactus.cli import main
from cactus.data import Subset, read_subsets, write_subsets
from cactus.metrics import METRICS
from cactus.report import MAX_DRAWN, build_report, render_report
from cactus.report.data import entity_order
from cactus.report.errors import partition_errors
from conftest import EXAMPLES

SCRIPT = '<script>alert("x")</script> charger'
SECTIONS = ("summary", "curve", "groups", "subsets", "worst")


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(min(before, 2))
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, tiny_backbone) -> Path:
    from cactus import Cactus

    folder = tmp_path_factory.mktemp("models") / "tiny"
    Cactus(backbone=tiny_backbone, threshold=0.5, device="cpu").save_pretrained(folder)
    return folder


def labelled_subsets() -> list[Subset]:
    """The examples twice over, under ids 'alpha/..', 'beta/..', 'gamma/..', with a 'level' field, a text that holds a
    script tag and a gold label with markup."""
    out = []
    for k, s in enumerate(read_subsets(EXAMPLES) * 2):
        texts, labels = list(s.texts), list(s.labels)
        if k == 0:
            texts[3], labels[0] = SCRIPT, "a&b <c>"
        out.append(Subset(f"{('alpha', 'beta', 'gamma')[k % 3]}/{k:03d}", texts, labels,
                          extra={"level": "even" if k % 2 == 0 else "odd"}))
    return out


@pytest.fixture(scope="module")
def gold(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "gold.jsonl"
    write_subsets(path, labelled_subsets())
    return path


@pytest.fixture(scope="module")
def model_report(tmp_path_factory, gold, tiny_model) -> str:
    out = tmp_path_factory.mktemp("report") / "report.html"
    assert main(["report", str(gold), "--model", str(tiny_model), "-o", str(out), "--worst", "3", "-q"]) == 0
    return out.read_text(encoding="utf-8")


def cli(capsys, *args) -> tuple[int, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


class Page(HTMLParser):
    """The tags, ids and linking attributes of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.tags, self.ids, self.links = [], set(), []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        self.ids.add(attrs.get("id"))
        self.links += [(tag, name, value) for name, value in attrs.items() if name in ("href", "src", "xlink:href")]


def check_page(text: str) -> Page:
    """Parses; every <svg> is well-formed XML; nothing is fetched; no script."""
    page = Page(text)
    svgs = re.findall(r"<svg\b.*?</svg>", text, flags=re.S)
    assert svgs and len(svgs) == page.tags.count("svg")
    for svg in svgs:
        ET.fromstring(svg)  # raises on anything that is not well-formed
    assert not re.search(r"(https?:)?//[\w.-]+\.\w", text) and "url(" not in text
    assert all(tag == "a" and value.startswith("#") for tag, _, value in page.links), page.links
    assert not {"script", "link", "img", "iframe", "object", "embed"} & set(page.tags)
    assert set(SECTIONS) <= page.ids
    return page


def test_report_from_a_model(model_report):
    page = check_page(model_report)
    linked = re.findall(r'<tr><td><a href="#(subset-\d+)">([^<]+)</a></td>', model_report)
    assert [anchor for anchor, _ in linked] == ["subset-0", "subset-1", "subset-2"]  # the worst 3, first in the table
    for anchor, subset_id in linked:  # each opened below: its own section with its id
        assert anchor in page.ids and f"<code>{subset_id}</code>" in model_report
    amis = [float(a) for a in re.findall(r"<td>\d+</td><td>\d+</td><td>\d+</td><td>(-?[\d.]+)</td>", model_report)]
    assert len(amis) == 8 and amis == sorted(amis)
    assert page.tags.count("svg") == 1 + 2 * 3  # the curve, then a heatmap and a dendrogram per worst subset
    assert "model 0.50" in model_report and "best here" in model_report and "cut at threshold 0.50" in model_report
    assert all(name in model_report for name in ("B-cubed F1", "pairwise precision", "AMI"))
    assert "is split across predicted clusters" in model_report or "merges gold" in model_report
    assert "the subset id&#39;s prefix before" in model_report  # groups from the ids


def test_the_data_is_escaped_everywhere(model_report):
    assert "<script" not in model_report.lower()
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in model_report \
        or "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in model_report
    assert "<c>" not in model_report and "a&amp;b &lt;c&gt;" in model_report


def test_report_from_a_predictions_file(capsys, gold, tmp_path):
    subsets = read_subsets(gold)
    preds = [s.with_clusters([i % 2 for i in range(len(s))]) for s in subsets]
    moved = [Subset(p.id, p.texts[::-1], cluster_ids=p.cluster_ids[::-1]) for p in preds[::-1]]
    write_subsets(tmp_path / "pred.csv", moved)  # another layout, another order: matched by content
    out = tmp_path / "r.html"
    code, err = cli(capsys, "report", gold, "--predictions", tmp_path / "pred.csv", "-o", out, "--group-by", "level")
    assert code == 0, err
    text = out.read_text(encoding="utf-8")
    page = check_page(text)
    assert "No threshold curve" in text and "co-assignment" in text
    assert page.tags.count("svg") == 8  # a co-assignment view per subset (all 8 opened), no dendrogram, no curve
    assert "the field &#39;level&#39;" in text and "<td>even</td><td>4</td>" in text
    content = build_report(subsets, predictions=[p.cluster_ids for p in preds])
    assert [m["metric"] for m in content["summary"]] == list(METRICS)
    assert [r["group"] for r in content["groups"]["rows"]] == ["alpha", "beta", "gamma"]
    assert [r["count"] for r in content["groups"]["rows"]] == [3, 3, 2]
    assert content["curve"] is None and all(s["tree"] is None for s in content["worst"])


def test_no_groups_without_prefixes_and_a_table_column_to_group_by(tmp_path):
    subsets = read_subsets(EXAMPLES)
    preds = [[0] * len(s) for s in subsets]
    assert build_report(subsets, predictions=preds)["groups"] is None
    table = [Subset(s.id, s.texts, s.labels, columns={"team": ["x" if k < 2 else "y"] * len(s)})
             for k, s in enumerate(subsets)]
    write_subsets(tmp_path / "t.csv", table)
    content = build_report(read_subsets(tmp_path / "t.csv"), predictions=preds, group_by="team")
    assert [(r["group"], r["count"]) for r in content["groups"]["rows"]] == [("x", 2), ("y", 2)]


def test_a_table_with_its_own_column_names(capsys, tmp_path):
    names = {"subset_id": "query", "text": "title", "label": "category"}
    subsets = read_subsets(EXAMPLES)
    write_subsets(tmp_path / "gold.csv", subsets, columns=names)
    write_subsets(tmp_path / "pred.csv", [s.with_clusters([k % 2 for k in range(len(s))]) for s in subsets],
                  columns=names)
    out = tmp_path / "r.html"
    code, err = cli(capsys, "report", tmp_path / "gold.csv", "--predictions", tmp_path / "pred.csv", "-o", out,
                    "--subset-id-column", "query", "--text-column", "title", "--label-column", "category", "-q")
    assert code == 0, err
    page = out.read_text(encoding="utf-8")
    assert all(str(s.id) in page for s in subsets) and subsets[0].texts[0][:20] in page


def test_bad_input_is_one_error_line_with_the_data_exit_code(capsys, gold, tmp_path, tiny_model):
    subsets = read_subsets(gold)
    write_subsets(tmp_path / "pred.jsonl", [s.with_clusters([0] * len(s)) for s in subsets[1:]])
    out = tmp_path / "r.html"
    code, err = cli(capsys, "report", gold, "--predictions", tmp_path / "pred.jsonl", "-o", out)
    assert code == 3 and not out.exists()
    assert err.strip() == (f"error: {tmp_path / 'pred.jsonl'}, subset 'alpha/000': no prediction for 1 of 8 subsets "
                           "(missing: 'alpha/000')")
    code, err = cli(capsys, "report", gold, "--model", tiny_model, "-o", out, "--group-by", "team")
    assert code == 3 and not out.exists()
    assert err.strip() == (f"error: {gold}, subset 'alpha/000': no field 'team' to group by (its other fields: "
                           "level)")
    code, err = cli(capsys, "report", gold, "--predictions", tmp_path / "pred.jsonl", "-o", gold)
    assert code == 2 and "is the input" in err


def test_errors_in_words():
    texts = ["t0", "t1", "t2", "t3", "t4"]
    errors = partition_errors(texts, ["a", "a", "a", "b", "b"], [0, 0, 1, 1, 1], names={1: "b / t3"})
    assert [e["sentence"] for e in errors] == [
        "gold 'a' (3 entities) is split across predicted clusters 0 (2 entities) and 1 (1 entity)",
        "predicted cluster 1 ('b / t3', 3 entities) merges gold 'b' (2) and 'a' (1)"]
    assert errors[0]["examples"] == [{"part": "predicted cluster 0", "texts": ["t0", "t1"]},
                                     {"part": "predicted cluster 1", "texts": ["t2"]}]
    assert partition_errors(texts, list("aabbc"), [5, 5, 7, 7, 9]) == []


def test_entities_are_ordered_by_predicted_cluster_with_each_gold_cluster_in_one_run():
    import numpy as np

    gold, pred = np.array([0, 0, 1, 0, 1, 1, 2, 2]), np.array([0, 0, 0, 1, 2, 3, 3, 4])
    order = entity_order(gold, pred)
    assert pred[order].tolist() == [1, 0, 0, 0, 2, 3, 3, 4] and gold[order].tolist() == [0, 0, 0, 1, 1, 1, 2, 2]


def test_a_large_subset_is_drawn_in_part(tiny_model):
    from cactus import Cactus

    n = MAX_DRAWN + 15
    big = Subset("big", [f"item {i} of kind {i % 4}" for i in range(n)], [f"k{i % 4}" for i in range(n)])
    content = build_report([big], model=Cactus.from_pretrained(tiny_model, device="cpu"), worst=1)
    opened = content["worst"][0]
    assert opened["drawn"] == MAX_DRAWN and len(opened["view"]["values"]) == MAX_DRAWN
    text = render_report(content)
    check_page(text)
    assert f"Showing {MAX_DRAWN} of {n} entities" in text


def test_an_adaptive_cut_without_a_threshold_and_tiny_subsets(tiny_backbone):
    from cactus import Cactus

    subsets = [Subset("one", ["alone"], ["x"]), Subset("two", ["a b", "c d"], ["x", "y"]),
               *read_subsets(EXAMPLES)[:2]]
    content = build_report(subsets, model=Cactus(backbone=tiny_backbone, cut="adaptive", device="cpu"))
    assert content["curve"]["model_threshold"] is None and content["curve"]["reference"] is not None
    trees = {s["id"]: s["tree"] for s in content["worst"]}
    assert trees["one"] is None and trees["two"]["cut_label"].startswith("adaptive cut")
    text = render_report(content)
    page = check_page(text)
    assert page.tags.count("svg") == 1 + 4 + 3  # the curve, four heatmaps, and no dendrogram for one entity


def test_a_browser_renders_it_without_console_errors(model_report, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium to render the page; install it with: apt-get install -y chromium")
    page = tmp_path / "report.html"
    page.write_text(model_report, encoding="utf-8")
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "CONSOLE" not in proc.stderr and "Uncaught" not in proc.stderr, proc.stderr
    assert "Clustering report" in proc.stdout and 'id="worst"' in proc.stdout and "<svg" in proc.stdout
