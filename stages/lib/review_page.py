"""reports/audit/review.html: the audit's lists as one page a person works through, and the rows for corrections.csv
it gives back.

Self-contained and offline: the images are in the page (data: URIs of the stored JPEGs), and so are its script and
styles; it opens from file:// with no network. For each image the audit names (a suspected label error, either
image of a near-duplicate pair, an outlier, every copy of a label conflict): accept the suggested class, relabel to
any class, drop, or keep (reviewed: its label is right). "Save" downloads the decisions as rows in corrections.csv's
columns (review-decisions.csv), which `imagefolder-review --merge review-decisions.csv` adds to corrections.csv; the
same rows are in a text box to copy. Decisions stay in the browser's storage for this page until saved or cleared.

Class names and paths are data: the page sets them as text, never as HTML, and the embedded JSON escapes `<`, `>`
and `&`, so a class named `</script><script>...` is a name.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from typing import Any

import pandas as pd

from stages.lib import images

DECISIONS_FILE = "review-decisions.csv"  # what the page's Save downloads
THUMBNAIL_PIXELS = 128  # each image in the page: small enough that hundreds keep the page a few MB
THUMBNAIL_QUALITY = 85


def thumbnail_uri(data: bytes) -> str:
    """The image in `data` (any format the pipeline reads) as a JPEG data: URI at most THUMBNAIL_PIXELS a side."""
    out = io.BytesIO()
    images.thumbnail(data, THUMBNAIL_PIXELS).save(out, format="JPEG", quality=THUMBNAIL_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def page_data(
    tables: dict[str, pd.DataFrame],
    labels: dict[str, str],
    class_names: list[str],
    judge: dict[str, Any] | None,
    uris: dict[str, str],
    lists: tuple[str, str, str, str],
) -> dict[str, Any]:
    """What the page shows: `tables` are the audit's lists (`lists` names them: label issues, near-duplicates,
    outliers, label conflicts), `labels` each image's class by path, `uris` each image's thumbnail by path."""
    issues_name, pairs_name, outliers_name, conflicts_name = lists

    def image(path: str, sha256: str, split: str = "") -> dict[str, Any]:
        return {"path": path, "sha256": sha256, "split": split, "given": labels.get(path, ""), "image": uris.get(path)}

    conflicts = []
    for sha256, copies in tables[conflicts_name].groupby("sha256", sort=False):
        first = copies["path"].iloc[0]
        conflicts.append(image(first, sha256) | {"paths": copies["path"].tolist(), "given": copies["given"].tolist()})
    return {
        "classes": class_names,
        "judge": judge,
        "suspects": [
            image(row["path"], row["sha256"], row["split"])
            | {"given": row["given"], "suggested": row["suggested"], "score": row["score"]}
            for row in tables[issues_name].to_dict("records")
        ],  # fmt: skip
        "pairs": [
            {
                "a": image(row["path_a"], row["sha256_a"], row["split_a"]),
                "b": image(row["path_b"], row["sha256_b"], row["split_b"]),
                "similarity": row["similarity"],
                "same_bytes": bool(row["same_bytes"]),
            }
            for row in tables[pairs_name].to_dict("records")
        ],  # fmt: skip
        "outliers": [
            image(row["path"], row["sha256"], row["split"]) | {"given": row["label"], "score": row["score"]}
            for row in tables[outliers_name].to_dict("records")
        ],
        "conflicts": conflicts,
    }


def render(data: dict[str, Any]) -> str:
    """The page for `data` (page_data's), titled with its images' count; its decisions are stored under a key of
    its own content, so another audit's page starts with none."""
    embedded = json.dumps(data, ensure_ascii=False, sort_keys=True)
    key = hashlib.sha256(embedded.encode()).hexdigest()[:16]
    data = data | {"key": key}
    embedded = json.dumps(data, ensure_ascii=False, sort_keys=True)
    embedded = embedded.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return PAGE.replace("__DATA__", embedded).replace("__DECISIONS_FILE__", DECISIONS_FILE)


PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Audit review</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0 1.5em 6em; color: #222; }
  h1 { font-size: 1.4em; margin: 0.8em 0 0.2em; }
  h2 { font-size: 1.15em; margin: 1.6em 0 0.4em; border-bottom: 1px solid #ccc; }
  .note { color: #555; max-width: 70em; }
  .weak { background: #fff3cd; padding: 0.5em 0.8em; border-left: 4px solid #e0a800; }
  .cards { display: flex; flex-wrap: wrap; gap: 12px; }
  .card { border: 1px solid #ccc; border-radius: 6px; padding: 8px; width: 190px; background: #fafafa; }
  .card.decided { border-color: #2e7d32; background: #eef7ee; }
  .pair { display: flex; gap: 8px; border: 1px solid #ccc; border-radius: 6px; padding: 8px; }
  .pair .card { border: none; background: none; padding: 0; }
  .card img { width: 100%; height: 150px; object-fit: contain; background: #eee; display: block; }
  .path { font-family: monospace; font-size: 11px; word-break: break-all; color: #444; }
  .labels { margin: 4px 0; }
  .labels b { font-weight: 600; }
  .actions button, .actions select { font-size: 12px; margin: 2px 2px 0 0; }
  .chosen { font-size: 12px; color: #2e7d32; min-height: 1.2em; }
  #bar { position: fixed; bottom: 0; left: 0; right: 0; background: #263238; color: #fff; padding: 8px 1.5em;
         display: flex; gap: 1em; align-items: center; }
  #bar button { font-size: 14px; }
  #rows { width: 100%; height: 8em; font-family: monospace; font-size: 12px; }
  .hidden { display: none; }
</style>
</head>
<body>
<h1 id="title"></h1>
<p class="note" id="judge"></p>
<p class="note">Decide per image: <b>accept</b> the suggested class, <b>relabel</b> to any class, <b>drop</b> it from
every split, or <b>keep</b> it (you checked: the label is right; the next audit will not list it). <b>Save</b>
downloads the rows for corrections.csv; add them with <code>imagefolder-review --merge __DECISIONS_FILE__</code>, then
run <code>dvc repro</code>.</p>
<p>Show split: <select id="split-filter"><option value="">all</option><option>train</option><option>val</option>
<option>test</option></select></p>
<h2 id="suspects-title"></h2><div class="cards" id="suspects"></div>
<h2 id="conflicts-title"></h2><div class="cards" id="conflicts"></div>
<h2 id="pairs-title"></h2><div class="cards" id="pairs"></div>
<h2 id="outliers-title"></h2><div class="cards" id="outliers"></div>
<h2>Rows for corrections.csv</h2>
<textarea id="rows" readonly></textarea>
<div id="bar"><span id="count"></span><button id="save">Save __DECISIONS_FILE__</button>
<button id="clear">Clear decisions</button></div>
<script type="application/json" id="data">__DATA__</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("data").textContent);
const STORE = "imagefolder-review:" + DATA.key;
const decisions = new Map(JSON.parse(localStorage.getItem(STORE) || "[]"));  // sha256 -> {path, action, label}
const cardsOf = new Map();  // sha256 -> the cards showing that image

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;  // data is text, never HTML
  return node;
}

function csvField(value) {
  const text = String(value);
  return /[",\n\r]|^\s|\s$/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
}

function rowsCsv() {
  const lines = ["path,sha256,action,label,note"];
  for (const [sha256, d] of decisions) {
    const row = [d.path, sha256, d.action, d.action === "relabel" ? d.label : "", "review page"];
    lines.push(row.map(csvField).join(","));
  }
  return lines.join("\n") + "\n";
}

function describe(d) {
  return d.action === "relabel" ? "relabel to " + d.label : d.action;
}

function refresh() {
  localStorage.setItem(STORE, JSON.stringify([...decisions]));
  for (const [sha256, cards] of cardsOf) {
    const d = decisions.get(sha256);
    for (const card of cards) {
      card.classList.toggle("decided", Boolean(d));
      card.querySelector(".chosen").textContent = d ? "decided: " + describe(d) : "";
    }
  }
  document.getElementById("count").textContent = decisions.size + " decisions";
  document.getElementById("rows").value = rowsCsv();
}

function decide(item, action, label) {
  decisions.set(item.sha256, {path: item.path, action: action, label: label || ""});
  refresh();
}

function card(item, lines, suggested) {
  const node = el("div", {"class": "card", "data-sha256": item.sha256, "data-split": item.split || ""});
  const image = el("img", {alt: item.path});
  if (item.image) image.src = item.image;
  node.append(image, el("div", {"class": "path"}, item.path));
  for (const [name, value] of lines) {
    const line = el("div", {"class": "labels"});
    line.append(el("span", {}, name + ": "), el("b", {}, value));
    node.append(line);
  }
  const actions = el("div", {"class": "actions"});
  if (suggested !== undefined) {
    const accept = el("button", {"data-action": "accept"}, "accept " + suggested);
    accept.addEventListener("click", () => decide(item, "relabel", suggested));
    actions.append(accept);
  }
  const relabel = el("select", {"data-action": "relabel"});
  relabel.append(el("option", {value: ""}, "relabel to..."));
  DATA.classes.forEach((name, index) => relabel.append(el("option", {value: String(index)}, name)));
  relabel.addEventListener("change", () => {
    if (relabel.value !== "") decide(item, "relabel", DATA.classes[Number(relabel.value)]);
    relabel.value = "";
  });
  for (const action of ["drop", "keep"]) {
    const button = el("button", {"data-action": action}, action);
    button.addEventListener("click", () => decide(item, action));
    actions.append(button);
  }
  actions.append(relabel);
  node.append(actions, el("div", {"class": "chosen"}));
  if (!cardsOf.has(item.sha256)) cardsOf.set(item.sha256, []);
  cardsOf.get(item.sha256).push(node);
  return node;
}

function section(id, title, items, build) {
  document.getElementById(id + "-title").textContent = title + " (" + items.length + ")";
  const holder = document.getElementById(id);
  for (const item of items) holder.append(build(item));
  if (!items.length) holder.append(el("p", {"class": "note"}, "none"));
}

document.getElementById("title").textContent = "Audit review";
const judge = document.getElementById("judge");
if (DATA.judge) {
  const j = DATA.judge;
  judge.textContent = "The judge (out of fold) is right on " + j.accuracy.toFixed(3) + " [" + j.low.toFixed(3) + ", " +
    j.high.toFixed(3) + "] of the images; always answering the most frequent class: " + j.chance.toFixed(3) + ". " +
    (j.weak ? "It is weak: " + j.weak_words + "." : "Its " + j.listed + " suspects are listed, most suspicious first.");
  if (j.weak) judge.classList.add("weak");
}
section("suspects", "Suspected label errors", DATA.suspects, (s) => card(
  s, [["split", s.split], ["given", s.given], ["suggested", s.suggested], ["score", s.score.toFixed(4)]], s.suggested));
section("conflicts", "Label conflicts: one image under several classes (every copy left out until you decide)",
  DATA.conflicts, (c) => card(c, [["classes", c.given.join(", ")], ["copies", c.paths.join(" ")]]));
section("pairs", "Near-duplicate pairs", DATA.pairs, (pair) => {
  const node = el("div", {"class": "pair", "data-split": pair.a.split + " " + pair.b.split});
  node.append(card(pair.a, [["split", pair.a.split], ["label", pair.a.given]]),
              card(pair.b, [["split", pair.b.split], ["label", pair.b.given],
                            ["similarity", pair.similarity.toFixed(4) + (pair.same_bytes ? " (same file)" : "")]]));
  return node;
});
section("outliers", "Outliers", DATA.outliers, (o) =>
  card(o, [["split", o.split], ["label", o.given], ["score", o.score.toFixed(4)]]));

document.getElementById("split-filter").addEventListener("change", (event) => {
  const split = event.target.value;
  for (const node of document.querySelectorAll("#suspects .card, #outliers .card, #pairs .pair")) {
    node.classList.toggle("hidden", Boolean(split) && !node.dataset.split.split(" ").includes(split));
  }
});
document.getElementById("save").addEventListener("click", () => {
  const link = el("a", {download: "__DECISIONS_FILE__"});
  link.href = URL.createObjectURL(new Blob([rowsCsv()], {type: "text/csv"}));
  document.body.append(link);
  link.click();
  link.remove();
});
document.getElementById("clear").addEventListener("click", () => { decisions.clear(); refresh(); });
refresh();
</script>
</body>
</html>
"""
