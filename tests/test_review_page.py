"""The review page (reports/audit/review.html) in a real browser: opened from file:// in headless Chromium, every
kind of decision clicked, saved, and the saved rows read back as corrections.csv reads them; decisions survive a
reload; class names that look like HTML stay text. And the page's data from the audit's lists."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pandas as pd
from PIL import Image

from stages.lib import audit, corrections, review_page

CLASSES = ["None", "macro", "</script><b>bold</b>", "chat é 猫"]


def jpeg(colour: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (300, 200), colour).save(out, format="JPEG")
    return out.getvalue()


def digest(n: int) -> str:
    return f"{n:064x}"


def tables() -> dict[str, pd.DataFrame]:
    """Two suspects, a near-duplicate pair across splits, an outlier, a label conflict of two copies."""
    return {
        audit.LABEL_ISSUES: pd.DataFrame(
            {"path": ["train/None/1.jpg", "test/macro/2.jpg"], "split": ["train", "test"], "given": CLASSES[:2],
             "suggested": [CLASSES[2], CLASSES[0]], "score": [0.01, 0.2], "sha256": [digest(1), digest(2)]}
        ),
        audit.NEAR_DUPLICATES: pd.DataFrame(
            {"path_a": ["train/None/3.jpg"], "split_a": ["train"], "path_b": ["test/None/4.jpg"], "split_b": ["test"],
             "similarity": [0.97], "same_bytes": [False], "sha256_a": [digest(3)], "sha256_b": [digest(4)]}
        ),
        audit.OUTLIERS: pd.DataFrame(
            {"path": ["val/chat é 猫/5.jpg"], "split": ["val"], "label": [CLASSES[3]], "score": [0.001],
             "sha256": [digest(5)]}
        ),
        audit.LABEL_CONFLICTS: pd.DataFrame(
            {"sha256": [digest(6)] * 2, "path": ["train/None/6.jpg", "validation/macro/6.jpg"], "given": CLASSES[:2]}
        ),
    }  # fmt: skip


def write_page(folder: Path, judge: dict | None = None) -> Path:
    lists = (audit.LABEL_ISSUES, audit.NEAR_DUPLICATES, audit.OUTLIERS, audit.LABEL_CONFLICTS)
    paths = ["train/None/1.jpg", "test/macro/2.jpg", "train/None/3.jpg", "test/None/4.jpg", "val/chat é 猫/5.jpg",
             "train/None/6.jpg"]  # fmt: skip
    colours = ["red", "green", "blue", "navy", "gray", "white"]
    uris = {path: review_page.thumbnail_uri(jpeg(colour)) for path, colour in zip(paths, colours)}
    labels = {"train/None/3.jpg": "None", "test/None/4.jpg": "None"}
    data = review_page.page_data(tables(), labels, CLASSES, judge, uris, lists)
    page = folder / audit.REVIEW_PAGE
    page.write_text(review_page.render(data), encoding="utf-8")
    return page


def test_the_page_holds_its_data_and_escapes_what_would_end_its_script(tmp_path: Path):
    page = write_page(tmp_path).read_text(encoding="utf-8")
    assert page.count("</script>") == 2  # the page's own two scripts: a class name cannot close one
    assert "\\u003c/script\\u003e\\u003cb\\u003ebold" in page
    assert "https://" not in page and "http://" not in page  # nothing fetched: works offline
    assert page.count("data:image/jpeg;base64,") == 6


def test_the_page_in_a_browser_gives_the_rows_for_corrections_csv(tmp_path: Path, browser_page):
    judge = {"accuracy": 0.91, "low": 0.89, "high": 0.93, "chance": 0.5, "weak": False, "listed": 2, "found": 2}
    page, url = browser_page, write_page(tmp_path, judge).as_uri()
    page.goto(url)
    assert page.locator("#suspects .card").count() == 2 and page.locator("#pairs .card").count() == 2
    assert page.locator("#outliers .card").count() == 1 and page.locator("#conflicts .card").count() == 1
    assert page.locator("b", has_text=re.compile("^bold$")).count() == 0  # the class name is text, not markup
    assert "</script><b>bold</b>" in page.locator("#suspects").inner_text()
    assert "label: chat é 猫" in page.locator("#outliers").inner_text()
    assert "right on 0.910 [0.890, 0.930]" in page.locator("#judge").inner_text()
    assert all(image.evaluate("img => img.naturalWidth") > 0 for image in page.locator("img").all())

    suspect = page.locator(f'#suspects .card[data-sha256="{digest(1)}"]')
    suspect.locator('button[data-action="accept"]').click()  # to the suggested class
    second = page.locator(f'#suspects .card[data-sha256="{digest(2)}"]')
    second.locator('select[data-action="relabel"]').select_option(label=CLASSES[3])
    page.locator(f'#pairs .card[data-sha256="{digest(4)}"] button[data-action="drop"]').click()
    page.locator(f'#pairs .card[data-sha256="{digest(3)}"] button[data-action="keep"]').click()
    page.locator('#conflicts select[data-action="relabel"]').select_option(label=CLASSES[1])
    page.locator('#outliers button[data-action="drop"]').click()
    page.locator('#outliers button[data-action="keep"]').click()  # a second decision about an image replaces the first
    assert page.locator("#count").inner_text() == "6 decisions"
    assert "decided: relabel to chat é 猫" in second.inner_text()

    page.reload()  # the decisions are kept in the browser until saved or cleared
    assert page.locator("#count").inner_text() == "6 decisions"
    with page.expect_download() as download:
        page.locator("#save").click()
    saved = tmp_path / "saved.csv"
    download.value.save_as(saved)
    assert download.value.suggested_filename == review_page.DECISIONS_FILE
    rows = {row.sha256: row for row in corrections.read(saved, CLASSES)}
    assert {sha: (row.path, row.action, row.label) for sha, row in rows.items()} == {
        digest(1): ("train/None/1.jpg", "relabel", CLASSES[2]),
        digest(2): ("test/macro/2.jpg", "relabel", CLASSES[3]),
        digest(4): ("test/None/4.jpg", "drop", ""),
        digest(3): ("train/None/3.jpg", "keep", ""),
        digest(6): ("train/None/6.jpg", "relabel", CLASSES[1]),
        digest(5): ("val/chat é 猫/5.jpg", "keep", ""),
    }
    assert page.locator("#rows").input_value() == saved.read_text(encoding="utf-8")  # the same rows, to copy
    page.locator("#clear").click()
    assert page.locator("#count").inner_text() == "0 decisions"
    assert page.errors == []


def test_a_weak_judge_is_said_plainly_on_the_page(tmp_path: Path, browser_page):
    judge = {"accuracy": 0.41, "low": 0.39, "high": 0.43, "chance": 0.36, "weak": True, "listed": 2, "found": 653,
             "weak_words": audit.weak_judge_words(653, 2)}  # fmt: skip
    browser_page.goto(write_page(tmp_path, judge).as_uri())
    text = browser_page.locator("#judge").inner_text()
    assert "It is weak: most of its 653 suspects are its own mistakes: only its 2 most suspicious are listed" in text
    browser_page.locator("#split-filter").select_option("test")
    visible = [card.get_attribute("data-split") for card in browser_page.locator("#suspects .card:visible").all()]
    assert visible == ["test"]
    assert browser_page.errors == []
