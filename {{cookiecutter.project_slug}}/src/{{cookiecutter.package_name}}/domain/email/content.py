"""Text helpers shared by the mail parser and the table reader: charsets, HTML, URLs."""

from __future__ import annotations

import codecs
import re
from html.parser import HTMLParser

URL_RE = re.compile(r"""(?:https?://|www\.)[^\s<>"'`{}|\\^\[\]()]+""", re.IGNORECASE)
_URL_TRAIL = ".,;:!?'\")]}>"
# Bounded attribute length: an unbounded [^>]* is quadratic on text full of "<a" and no ">".
_TAG_RE = re.compile(
    r"<(?:[a-zA-Z][a-zA-Z0-9]{0,20}\b[^<>]{0,2000}|/[a-zA-Z][a-zA-Z0-9]{0,20}\s*)>"
)
# Bytes that never occur in text mail; more than a few percent of them means binary content.
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 12, 13, 27)) + b"\x7f"


def extract_urls(text: str) -> list[str]:
    """URLs (``http(s)://`` or ``www.``) in plain text, trailing punctuation removed."""
    urls = []
    for match in URL_RE.findall(text):
        url = match.rstrip(_URL_TRAIL)
        if len(url) > 4:
            urls.append(url)
    return urls


def looks_like_html(text: str) -> bool:
    """True when the text carries HTML tags (a body stored as HTML)."""
    return bool(_TAG_RE.search(text))


class _HtmlText(HTMLParser):
    """HTML to readable text: scripts, styles and the head dropped; blocks become lines."""

    SKIP = frozenset({"script", "style", "head", "title", "noscript", "template", "svg"})
    BLOCK = frozenset(
        [
            "p",
            "div",
            "br",
            "tr",
            "li",
            "ul",
            "ol",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "table",
            "blockquote",
            "section",
            "article",
            "header",
            "footer",
            "hr",
            "pre",
            "dl",
            "dt",
            "dd",
            "form",
            "center",
            "address",
        ]
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.links: list[str] = []
        self.skip = 0

    def _tag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":  # an unclosed <head> must not swallow the body
            self.skip = 0
        if tag in self.BLOCK:
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")
        if tag in ("a", "area"):
            href = dict(attrs).get("href") or ""
            self.links.extend(extract_urls(href.strip()))

    def handle_starttag(self, tag, attrs):
        self._tag(tag, attrs)
        if tag in self.SKIP:
            self.skip += 1

    def handle_startendtag(self, tag, attrs):
        self._tag(tag, attrs)

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def html_to_text(html: str) -> tuple[str, list[str]]:
    """The visible text of an HTML document and the URLs of its links."""
    parser = _HtmlText()
    try:
        parser.feed(html)
        parser.close()
        text = "".join(parser.parts)
    except Exception:  # html.parser gives up on some broken markup: strip tags instead
        text = _TAG_RE.sub(" ", html)
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return "\n".join(line for line in lines if line), parser.links


def is_binary(data: bytes) -> bool:
    """True for content that is not text mail: more than a few percent of control characters
    (NUL included) in its first 8 KiB. A stray NUL in text mail is damage, not a binary file."""
    sample = data[:8192]
    return len(sample) - len(sample.translate(None, _CONTROL)) > 0.05 * len(sample)


def decode_bytes(raw: bytes, charset: str | None) -> tuple[str, str | None]:
    """Decode with the declared charset, falling back to UTF-8 then cp1252; return the flag."""
    flag = None
    if charset:
        try:
            text = raw.decode(codecs.lookup(charset.strip().strip('"')).name)
            return _without_surrogates(text)
        except LookupError:
            flag = "charset:unknown"
        except (UnicodeError, ValueError, TypeError):
            flag = "charset:fallback"
    try:
        return raw.decode("utf-8"), flag
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace"), flag or "charset:fallback"


def _without_surrogates(text: str) -> tuple[str, str | None]:
    """Text that UTF-8 can encode: some codecs (UTF-7, unicode_escape) yield lone surrogates,
    which no Parquet or JSON writer accepts; they become U+FFFD."""
    try:
        text.encode("utf-8")
        return text, None
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text), "charset:fallback"
