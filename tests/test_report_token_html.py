"""Token selection page: structure and escaping, checked in the DOM that headless Chromium renders."""

import html
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

from rho.analysis import AnalysisInputError
from rho.report import render_token_html, render_token_html_string

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NASTY = '<script>alert("x")</script> & </span><b>'

DOCS = [
    [
        ("The", True, 0, 1.25),
        (" slope", True, 0, 0.5),
        (NASTY, False, 1, 4.0),
        ("\n", True, 0, None),
        (" is 6", False, 2, None),
    ],
    [("Kudos [?]: 890", False, "boilerplate", -0.25), (" x = 3", True, None, None)],
]
N_DROPPED = sum(not t[1] for d in DOCS for t in d)


class _Spans(HTMLParser):
    """Collect (class, title, data-label, text) of every token span."""

    def __init__(self):
        super().__init__()
        self.spans, self._cur, self.scripts = [], None, 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "span" and "tok" in a.get("class", "").split():
            self._cur = {
                "class": a["class"].split(),
                "title": a.get("title"),
                "label": a.get("data-label"),
                "text": "",
            }

    def handle_data(self, data):
        if self._cur is not None:
            self._cur["text"] += data

    def handle_endtag(self, tag):
        if tag == "span" and self._cur is not None:
            self.spans.append(self._cur)
            self._cur = None


def _parse(text):
    p = _Spans()
    p.feed(text)
    return p


def test_page_structure_and_escaping_in_source():
    src = render_token_html_string(DOCS, label_names=["content", "gibberish", "html"])
    assert "<script>" not in src and "&lt;script&gt;" in src
    p = _parse(src)
    assert [s["text"] for s in p.spans] == [t[0] for d in DOCS for t in d]
    assert sum("dropped" in s["class"] for s in p.spans) == N_DROPPED
    assert [s["label"] for s in p.spans] == [
        "content",
        "content",
        "gibberish",
        "content",
        "html",
        "boilerplate",
        None,
    ]
    assert p.spans[2]["title"] == "dropped | provenance: gibberish | score: 4.000"
    assert ["noise" in s["class"] for s in p.spans] == [False, False, True, False, True, True, False]
    assert 'data-kept="3" data-total="5"' in src and "kept 3/5 tokens (60.0%)" in src
    assert "kept 1/2 tokens (50.0%)" in src and "4 of 7 tokens kept (57.1%)" in src
    assert "http" not in src  # self-contained: no external resources


def test_render_validates_before_writing(tmp_path):
    out = tmp_path / "page.html"
    out.write_text("old")
    with pytest.raises(AnalysisInputError, match="document 0 token 1"):
        render_token_html([[("a", True, 0, None), ("b", "yes", 0, None)]], out)
    with pytest.raises(AnalysisInputError, match="finite number"):
        render_token_html([[("a", True, 0, float("nan"))]], out)
    with pytest.raises(AnalysisInputError, match="no documents"):
        render_token_html([], out)
    assert out.read_text() == "old"
    render_token_html([[("a", np.bool_(True), np.uint8(1), np.float32(0.5))]], out)
    assert _parse(out.read_text()).spans[0]["label"] == "noise kind 1"


def _chromium(args, tmp_path):
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=True)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_rendered_dom_in_headless_chromium(tmp_path):
    page = render_token_html(DOCS, tmp_path / "tokens.html", label_names=["content", "gibberish", "html"])
    dom = _chromium(["--dump-dom", page.resolve().as_uri()], tmp_path).stdout
    p = _parse(dom)
    assert p.scripts == 0  # the escaped <script> stayed text
    assert sum("dropped" in s["class"] for s in p.spans) == N_DROPPED
    assert sum("kept" in s["class"] for s in p.spans) == 7 - N_DROPPED
    assert p.spans[2]["text"] == NASTY  # escaped text survives intact through the browser
    assert re.search(r"kept 3/5 tokens \(60\.0%\)", html.unescape(dom))
    assert 'id="legend"' in dom and "dropped token" in dom
    shot = tmp_path / "shot.png"
    _chromium([f"--screenshot={shot}", "--window-size=1000,600", page.resolve().as_uri()], tmp_path)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000


BLOCKS = [
    [("<s>", None, 0, None), (" a", True, 0, 0.5), (" b", False, 1, 2.0), (" c", True, 0, 0.1)],
    [("x", None, None, None), (" y", False, 0, 1.0)],
]


def test_context_tokens_are_neutral_and_not_counted():
    src = render_token_html_string(BLOCKS, unit="block", label_names=["content", "gibberish"])
    p = _parse(src)
    assert [s["text"] for s in p.spans] == [t[0] for d in BLOCKS for t in d]
    state = [next(c for c in s["class"] if c in ("kept", "dropped", "context")) for s in p.spans]
    assert state == ["context", "kept", "dropped", "kept", "context", "dropped"]
    assert p.spans[0]["title"] == "context: not scored | provenance: content"
    assert p.spans[4]["title"] == "context: not scored"
    assert ".tok.context" in src and "color: #9a9a9a" in src  # grey, not the kept colour
    # counts and shares cover scored tokens only: 2 of 3 and 0 of 1, not 3/4 and 1/2
    heads = re.findall(r'data-kept="(\d+)" data-total="(\d+)" data-context="(\d+)"', src)
    assert heads == [("2", "3", "1"), ("0", "1", "1")]
    assert "kept 2/3 tokens (66.7%) + 1 context" in src and "kept 0/1 tokens (0.0%) + 1 context" in src
    summary = " ".join(
        re.search(r'<div class="summary" id="summary">(.*?)</div>', src, re.S).group(1).split()
    )
    assert summary == "2 blocks; 2 of 4 tokens kept (50.0%); 2 context tokens not scored."
    assert "context token</span>" in src  # legend entry
    assert [m for m in re.findall(r'<span class="doc-title">(.*?)</span>', src)] == ["block 1", "block 2"]


def test_unit_word_defaults_and_no_context_legend():
    src = render_token_html_string([[("a", True, None, None)]])
    assert "1 document;" in src and '<span class="doc-title">document 1</span>' in src
    assert "context token</span>" not in src and "context tokens not scored" not in src
    src = render_token_html_string([[("a", None, None, None)]], unit="block")
    assert "kept 0/0 tokens (n/a) + 1 context" in src and "0 of 0 tokens kept (n/a)" in src
    with pytest.raises(AnalysisInputError, match="block 0 token 0"):
        render_token_html_string([[("a", 1, 0, None)]], unit="block")
    with pytest.raises(AnalysisInputError, match="unit must be"):
        render_token_html_string([[("a", True, 0, None)]], unit="")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_context_tokens_in_headless_chromium(tmp_path):
    page = render_token_html(BLOCKS, tmp_path / "blocks.html", unit="block")
    dom = _chromium(["--dump-dom", page.resolve().as_uri()], tmp_path).stdout
    p = _parse(dom)
    assert sum("context" in s["class"] for s in p.spans) == 2
    assert (
        sum("kept" in s["class"] for s in p.spans) == 2 and sum("dropped" in s["class"] for s in p.spans) == 2
    )
    assert "2 of 4 tokens kept (50.0%)" in " ".join(html.unescape(dom).split())
