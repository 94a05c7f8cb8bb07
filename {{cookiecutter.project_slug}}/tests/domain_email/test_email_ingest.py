"""Ingestion of real mail: tables, .eml trees, mbox, labels, and malformed input of every kind.

Every fixture is built in tmp_path by the test itself; no binary file is committed.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from {{ cookiecutter.package_name }}.data import ingest as ing
from {{ cookiecutter.package_name }}.domain.email import ingest as mail_reader
from {{ cookiecutter.package_name }}.domain.email import mailsource


def with_mapping(cfg, mapping: dict[str, str]):
    """The contract with another column_mapping (the contract model is frozen)."""
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"column_mapping": mapping})})


def flags_of(records: pd.DataFrame, i: int = 0) -> set[str]:
    value = records["quality_flags"].iloc[i]
    return set(value.split(",")) if value else set()


def assert_canonical(cfg, result: ing.IngestResult) -> None:
    """Schema, dtypes and the bookkeeping every ingest must satisfy."""
    records, counts = result.records, result.counts
    assert list(records.columns) == [c.name for c in cfg.data.columns]
    for column in cfg.data.columns:
        dtype = records[column.name].dtype
        if column.dtype == "datetime":
            assert str(dtype).endswith(", UTC]"), (column.name, dtype)
        elif column.dtype == "int":
            assert dtype == "int64", (column.name, dtype)
        elif column.dtype == "string":
            assert dtype.kind == "O", (column.name, dtype)
            assert not any(isinstance(v, float) for v in records[column.name]), column.name
    assert set(records["label"]) <= {cfg.problem.positive_class, cfg.problem.negative_class}
    assert list(result.quarantine.columns) == ["source", "location", "reason", "excerpt"]
    assert counts.read == counts.ingested + counts.quarantined
    assert counts.ingested == len(records)
    assert counts.quarantined == len(result.quarantine)
    assert sum(counts.by_reason.values()) == counts.quarantined


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.replace("\n", "\r\n").encode("utf-8")  # real mail has CRLF line ends
    path.write_bytes(data)
    return path


def eml(
    subject: str = "Hello",
    body: str = "Just a note.",
    *,
    sender: str = "Alice <Alice@Example.COM>",
    date: str | None = "Mon, 01 Jan 2024 10:00:00 +0100",
    message_id: str | None = "<m1@example.com>",
    extra: str = "",
) -> str:
    headers = [f"From: {sender}", "To: bob@example.org, carol@example.org", f"Subject: {subject}"]
    if date:
        headers.append(f"Date: {date}")
    if message_id:
        headers.append(f"Message-ID: {message_id}")
    return "\n".join(headers) + "\n" + extra + "\n" + body + "\n"


HTML_WITH_ATTACHMENTS = """From: "Prize Dept" <win@lucky-prizes.biz>
To: victim@example.org
Cc: a@example.org, b@example.org
Reply-To: Claims <CLAIMS@other.biz>
Date: Tue, 02 Jan 2024 08:30:00 -0500
Subject: =?utf-8?q?You_w=C3=B3n!?=
Message-ID: <prize-1@lucky-prizes.biz>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="OUTER"

--OUTER
Content-Type: multipart/related; boundary="INNER"

--INNER
Content-Type: text/html; charset=utf-8

<html><head><style>p {color: red}</style><script>var x = 1;</script></head>
<body><p>Claim your <b>prize</b> now!</p>
<a href="https://lucky-prizes.biz/claim?id=7">click</a> <img src="cid:logo"></body></html>
--INNER
Content-Type: image/png
Content-ID: <logo>
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--INNER--
--OUTER
Content-Type: application/pdf
Content-Disposition: attachment; filename="Invoice.PDF"
Content-Transfer-Encoding: base64

JVBERi0xLjQ=
--OUTER
Content-Type: application/octet-stream; name="setup.exe"
Content-Disposition: attachment; filename="setup.exe"

MZ
--OUTER--
"""

ALTERNATIVE = """From: news@shop.example
To: me@example.org
Date: Wed, 03 Jan 2024 12:00:00 +0000
Subject: Weekly offers
Message-ID: <news-1@shop.example>
Content-Type: multipart/alternative; boundary="ALT"

--ALT
Content-Type: text/plain; charset=utf-8

Our offers: https://shop.example/offers
--ALT
Content-Type: text/html; charset=utf-8

<p>Our offers: <a href="https://shop.example/offers">here</a></p>
--ALT--
"""

FORWARDED = """From: bob@example.org
To: me@example.org
Date: Thu, 04 Jan 2024 12:00:00 +0000
Subject: Fwd: minutes
Message-ID: <fwd-1@example.org>
Content-Type: multipart/mixed; boundary="F"

--F
Content-Type: text/plain

See below.
--F
Content-Type: message/rfc822

From: carol@example.org
Subject: minutes

These words belong to the attached message, not to the body.
--F--
"""


# --------------------------------------------------------------------------- tabular


def test_csv_with_column_mapping(cfg, tmp_path):
    path = write(
        tmp_path / "corpus.csv",
        "id,date,from,title,text,is_spam,extra\n"
        "a1,2024-01-02T10:00:00Z,Ann@Mail.COM,Hi,Hello see https://x.example/a,0,z\n"
        'a2,"Tue, 02 Jan 2024 11:00:00 +0100",win@prize.biz,WIN,"Multi\nline, with comma",1,z\n'
        "a3,2024-01-03 09:00:00,c@d.org,Hey,<p>html body</p>,TRUE,z\n",
    )
    mapping = {
        "id": "message_id",
        "date": "received_at",
        "from": "sender",
        "title": "subject",
        "text": "body",
        "is_spam": "label",
    }
    result = ing.ingest(with_mapping(cfg, mapping), path)
    assert_canonical(cfg, result)
    r = result.records
    assert list(r["message_id"]) == ["a1", "a2", "a3"]
    pos, neg = cfg.problem.positive_class, cfg.problem.negative_class
    assert list(r["label"]) == [neg, pos, pos]
    assert r["sender"][0] == "ann@mail.com" and r["sender_domain"][0] == "mail.com"
    assert r["received_at"][1] == pd.Timestamp("2024-01-02T10:00:00Z")  # RFC 2822, +0100
    assert r["received_at"][2] == pd.Timestamp("2024-01-03T09:00:00Z")  # naive -> UTC
    assert r["body"][1] == "Multi\nline, with comma"
    assert r["urls"][0] == "https://x.example/a" and r["urls"][1] == ""
    assert list(r["content_type"]) == ["text/plain", "text/plain", "text/html"]
    assert "missing:recipient_count" in flags_of(r) and "missing:message_id" not in flags_of(r)
    assert r["recipient_count"][0] == 1 and r["attachment_count"][0] == 0
    assert any("extra" in note for note in result.notes)


def test_jsonl_with_a_broken_line(cfg, tmp_path):
    pos, neg = cfg.problem.positive_class, cfg.problem.negative_class
    rows = [
        {
            "message_id": "j1",
            "received_at": 1704103200,  # epoch seconds
            "sender": "a@b.org",
            "body": "hi",
            "label": pos.title(),
            "urls": ["https://a.example", "https://b.example"],
            "attachment_types": ["pdf", "zip"],
            "attachment_count": 2,
            "recipient_count": "3",
        },
        {"message_id": "j2", "received_at": "2024-01-02", "sender": "c@d.org", "label": neg},
    ]
    lines = [json.dumps(rows[0]), "", "{not json", json.dumps(rows[1]), "[1, 2]"]
    path = write(tmp_path / "corpus.jsonl", "\n".join(lines))
    result = ing.ingest(cfg, path)
    assert_canonical(cfg, result)
    r = result.records
    assert list(r["message_id"]) == ["j1", "j2"]
    assert r["received_at"][0] == pd.Timestamp("2024-01-01T10:00:00Z")
    assert r["urls"][0] == "https://a.example https://b.example"
    assert r["attachment_types"][0] == "pdf,zip" and r["attachment_count"][0] == 2
    assert r["recipient_count"][0] == 3
    assert "missing:body" in flags_of(r, 1) and r["body"][1] == ""
    assert result.counts.read == 4  # the blank line is not a record
    assert result.counts.by_reason == {"unparseable_row": 2}
    assert sorted(result.quarantine["location"]) == ["line 3", "line 5"]


def test_parquet_with_typed_columns(cfg, tmp_path):
    frame = pd.DataFrame(
        {
            "message_id": ["p1", "p2", "p3"],
            "received_at": pd.to_datetime(["2024-01-01 10:00", "2024-01-01 11:00", None]),
            "sender": ["a@b.org", None, "c@d.org"],
            "subject": ["s", None, "u"],
            "body": ["x", "y", "z"],
            "recipient_count": [2, 1, 4],
            "label": [True, False, True],
        }
    )
    path = tmp_path / "corpus.parquet"
    frame.to_parquet(path)
    result = ing.ingest(cfg, path)
    assert_canonical(cfg, result)
    r = result.records
    pos, neg = cfg.problem.positive_class, cfg.problem.negative_class
    assert list(r["label"]) == [pos, neg, pos]
    assert r["received_at"][0] == pd.Timestamp("2024-01-01T10:00:00Z")
    assert pd.isna(r["received_at"][2]) and "missing:received_at" in flags_of(r, 2)
    assert r["sender"][1] == "unknown@unknown.invalid" and "missing:sender" in flags_of(r, 1)
    assert r["subject"][1] is None  # a null subject stays null: that is a fact about the email
    assert list(r["recipient_count"]) == [2, 1, 4]


def test_text_and_label_only_corpus(cfg, tmp_path):
    pos, neg = cfg.problem.positive_class, cfg.problem.negative_class
    path = write(
        tmp_path / "sms.csv",
        f"text,label\nFree entry! www.win.example,{pos}\nSee you at 5,{neg}\n"
        f"See you at 5,{neg}\nCall now,{pos.upper()}\n",
    )
    result = ing.ingest(with_mapping(cfg, {"text": "body"}), path)
    assert_canonical(cfg, result)
    r = result.records
    assert result.counts.ingested == 4 and result.counts.quarantined == 0
    expected = {
        "missing:message_id",
        "received_at:row_order",
        "missing:sender",
        "missing:sender_domain",
        "missing:recipient_count",
        "missing:subject",
        "missing:attachment_count",
        "missing:inline_image_count",
    }
    for i in range(4):
        assert flags_of(r, i) == expected
    # Documented defaults, and an order for the time split.
    assert set(r["sender"]) == {"unknown@unknown.invalid"}
    assert set(r["sender_domain"]) == {"unknown.invalid"}
    assert r["received_at"][0] == pd.Timestamp(ing.ROW_ORDER_EPOCH)
    assert r["received_at"].is_monotonic_increasing and r["received_at"].is_unique
    assert r["message_id"].is_unique  # identical rows still get distinct ids
    assert r["urls"][0] == "www.win.example"
    assert set(r["subject"]) == {""} and set(r["recipient_count"]) == {1}
    # Ids come from the content: re-ingesting gives the same ids.
    again = ing.ingest(with_mapping(cfg, {"text": "body"}), path).records
    assert list(again["message_id"]) == list(r["message_id"])


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("1", "pos"),
        ("0", "neg"),
        ("true", "pos"),
        ("False", "neg"),
        (" {POS} ", "pos"),
        ("{Neg}", "neg"),
    ],
)
def test_label_spellings(cfg, spelling, expected):
    pos, neg = cfg.problem.positive_class, cfg.problem.negative_class
    spelling = spelling.format(POS=pos.upper(), Neg=neg.title())
    labels = ing.normalise_labels(cfg, pd.Series([spelling]))
    assert labels[0] == (pos if expected == "pos" else neg)


# --------------------------------------------------------------------------- raw mail


def folder_alias(cfg, cls: str) -> str:
    """Another folder name the contract maps to ``cls`` (the class name itself when none)."""
    return next((f for f in cfg.data.label_folders.get(cls, []) if f != cls), cls)


def test_eml_tree_with_label_folders(cfg, tmp_path):
    pos, neg = cfg.problem.positive_class, cfg.problem.negative_class
    pos_alias, neg_alias = folder_alias(cfg, pos), folder_alias(cfg, neg)
    root = tmp_path / "mail"
    write(root / pos / "prize.eml", HTML_WITH_ATTACHMENTS)
    write(root / pos_alias.swapcase() / "2024" / "plain.eml", eml("cheap", message_id="<p@x>"))
    write(root / neg / "news", ALTERNATIVE)  # a plain message file without extension
    write(root / neg_alias / "fwd.eml", FORWARDED)
    write(root / neg / pos_alias / "deep.eml", eml("deep", message_id="<deep@x>"))
    write(root / ".DS_Store", b"\x00\x01binary tooling file")
    result = ing.ingest(cfg, root)
    assert_canonical(cfg, result)
    r = result.records.set_index("message_id")
    assert result.counts.read == 5 and result.counts.quarantined == 0
    assert r.loc["<prize-1@lucky-prizes.biz>", "label"] == pos
    assert r.loc["<p@x>", "label"] == pos  # a positive folder, at any depth, any case
    assert r.loc["<news-1@shop.example>", "label"] == neg
    assert r.loc["<fwd-1@example.org>", "label"] == neg
    assert r.loc["<deep@x>", "label"] == pos  # the deepest matching folder wins

    prize = r.loc["<prize-1@lucky-prizes.biz>"]
    assert (
        prize["sender"] == "win@lucky-prizes.biz" and prize["sender_domain"] == "lucky-prizes.biz"
    )
    assert prize["reply_to"] == "claims@other.biz"
    assert prize["recipient_count"] == 3
    assert prize["subject"] == "You wón!"
    assert prize["received_at"] == pd.Timestamp("2024-01-02T13:30:00Z")
    assert prize["content_type"] == "text/html"  # only HTML was present
    assert "Claim your prize now!" in prize["body"]
    assert (
        "<" not in prize["body"] and "var x" not in prize["body"] and "color" not in prize["body"]
    )
    assert prize["urls"] == "https://lucky-prizes.biz/claim?id=7"
    assert prize["attachment_count"] == 2 and prize["attachment_types"] == "pdf,exe"
    assert prize["inline_image_count"] == 1
    assert prize["quality_flags"] == ""

    news = r.loc["<news-1@shop.example>"]
    assert (
        news["content_type"] == "text/plain"
        and news["body"] == "Our offers: https://shop.example/offers"
    )
    assert news["urls"] == "https://shop.example/offers"

    fwd = r.loc["<fwd-1@example.org>"]
    assert fwd["attachment_types"] == "eml" and "attached message" not in fwd["body"]


def test_mbox_file(cfg, tmp_path):
    messages = [
        eml("one", "first body", message_id="<1@x>"),
        eml("two", "a line\n>From here on, quoted\nFrom inside a paragraph", message_id="<2@x>"),
        eml("three", "third body", message_id="<3@x>"),
    ]
    text = "".join(f"From sender@x Mon Jan  1 00:00:00 2024\n{m}\n" for m in messages)
    # LF line ends, as mbox files have
    path = write(tmp_path / f"{cfg.problem.positive_class}.mbox", text.encode())
    result = ing.ingest(cfg, path)
    assert_canonical(cfg, result)
    r = result.records
    assert list(r["message_id"]) == ["<1@x>", "<2@x>", "<3@x>"]
    assert set(r["label"]) == {cfg.problem.positive_class}  # from the mbox file name
    assert "From here on, quoted" in r["body"][1] and ">From" not in r["body"][1]
    assert r["body"][1].endswith("From inside a paragraph")  # not a separator: no blank before


ENVELOPES = [
    b"From sender@x Mon Jan  1 00:00:00 2024",
    b"From - Tue Nov 15 08:01:02 2022",  # Thunderbird
    b"From 1781234567890123456@xxx Wed Mar 15 10:00:00 +0000 2023",  # a Gmail export
    b"From MAILER-DAEMON Fri Jul  8 12:08 PST 2011",
    b"From sender@x Mon, 1 Jan 2024 10:00:00 +0000",
]
# Shaped like an envelope, other date styles: a message starts there when headers follow.
SHAPED = [
    b"From sender@x 2024-01-01T10:00:00Z",
    b"From sender@x Mon Jan  1 10:00:00 2024 (PST)",
    b"From uucp Mon Jan  1 10:00:00 2024 remote from host",
    b"From MAILER-DAEMON",
    b"From sender@x",
]
# Body lines some writers leave unquoted, after a blank line.
PROSE = [
    b"From 9:00 to 17:00 we are open.",
    b"From Jan 2024 on, at 10:00, prices rise",
    b"From Bob",
    b"From here on, quoted",
    b"From ",
    b"From the desk of Jan Mar 1 10:00 2024",
]


@pytest.mark.parametrize("line", ENVELOPES)
def test_an_mbox_envelope_starts_a_message(line):
    assert mailsource.is_envelope(line)


@given(
    st.lists(
        st.sampled_from(["Mon", "Jan", "1", "10:00", "2024", "+0000", "PST", "x@y", "-", "we"]),
        max_size=6,
    ),
    st.sampled_from(["we", "are", "open", "to", "the", "at", "rise.", "1st", "2024-01-01", "Bob"]),
    st.integers(min_value=0, max_value=6),
)
def test_a_line_with_a_word_no_date_has_is_no_envelope(words, prose, at):
    """Any word that is not a date's (a name, a number, a time, a zone) makes "From ..." body
    text, wherever it stands after the sender, unless headers follow it."""
    words = [*words[:at], prose, *words[at:]]
    line = ("From " + " ".join(["sender@x", *words])).encode()
    assert not mailsource.is_envelope(line)


def test_an_unquoted_from_line_in_a_body_stays_in_its_message(cfg, tmp_path):
    paragraphs = [line.decode() for line in PROSE]
    body = "Hello,\n\n" + "\n\n".join(paragraphs) + "\n\n" + paragraphs[0] + "\nSee you."
    messages = [eml("hours", body, message_id="<hours@x>"), eml("next", message_id="<next@x>")]
    text = "".join(f"From sender@x Mon Jan  1 00:00:00 2024\n{m}\n" for m in messages)
    path = write(tmp_path / f"{cfg.problem.positive_class}.mbox", text.encode())
    result = ing.ingest(cfg, path)
    assert_canonical(cfg, result)
    assert list(result.records["message_id"]) == ["<hours@x>", "<next@x>"]
    assert result.counts.by_reason == {}
    kept = result.records["body"][0]
    assert all(line.decode().strip() in kept for line in PROSE) and kept.endswith("See you.")


def test_other_envelope_styles_start_a_message_where_headers_follow(cfg, tmp_path):
    messages = [eml(f"m{i}", message_id=f"<m{i}@x>") for i in range(len(SHAPED) + 1)]
    separators = [b"From sender@x Mon Jan  1 00:00:00 2024", *SHAPED]
    text = b"\xef\xbb\xbf"  # a byte order mark before the first envelope
    pairs = zip(separators, messages, strict=True)
    text += b"".join(line + b"\n" + m.encode() + b"\n" for line, m in pairs)
    path = write(tmp_path / f"{cfg.problem.positive_class}.mbox", text)
    result = ing.ingest(cfg, path)
    assert_canonical(cfg, result)
    assert list(result.records["message_id"]) == [f"<m{i}@x>" for i in range(len(messages))]
    assert result.counts.quarantined == 0


def test_mbox_garbage_message_is_quarantined_with_its_index(cfg, tmp_path):
    neg = cfg.problem.negative_class
    text = (
        "From a@x Mon Jan  1 00:00:00 2024\n" + eml("ok", message_id="<ok@x>") + "\n"
        "From b@x Mon Jan  1 00:00:00 2024\nthis is not a message at all\n\n"
    )
    path = write(tmp_path / "box", text)  # CRLF; no extension: detected by content
    result = ing.ingest(
        cfg, path, labels_file=write(tmp_path / "l.csv", f"message_id,label\nok@x,{neg}\n")
    )
    assert_canonical(cfg, result)
    assert result.counts.by_reason == {"not_an_email": 1}
    assert result.quarantine["location"][0].startswith("message 1, byte ")


def test_labels_file_by_message_id_and_file_name(cfg, tmp_path):
    root = tmp_path / "unsorted"
    write(root / "a.eml", eml("a", message_id="<a@x>"))
    write(root / "b.eml", eml("b", message_id=None))  # no Message-ID: matched by file name
    write(root / cfg.problem.positive_class / "c.eml", eml("c", message_id="<c@x>"))  # file wins
    write(root / "d.eml", eml("d", message_id="<d@x>"))  # in neither: no label
    labels = write(
        root / "labels.csv",  # inside the tree: must not be read as a message
        f"message_id,label\n<a@x>,{cfg.problem.positive_class}\nc@x,0\nb.eml,1\n",
    )
    result = ing.ingest(cfg, root, labels_file=labels)
    assert_canonical(cfg, result)
    pos, neg = cfg.problem.positive_class, cfg.problem.negative_class
    by_subject = result.records.set_index("subject")["label"].to_dict()
    assert by_subject == {"a": pos, "b": pos, "c": neg}
    assert result.counts.read == 4 and result.counts.by_reason == {"no_label": 1}
    assert result.quarantine["source"][0].endswith("d.eml")


def test_labels_file_conflicts_quarantine_and_the_most_specific_key_wins(cfg, tmp_path):
    """A key given both classes quarantines its message, naming both; a message named by its
    path and by its file name takes the path's label, and its id's before either."""
    pos, neg = cfg.problem.positive_class, cfg.problem.negative_class
    root = tmp_path / "mail"
    write(root / "a.eml", eml("a", message_id=None))
    write(root / "sub" / "b.eml", eml("b", message_id=None))
    write(root / "sub" / "c.eml", eml("c", message_id="<c@x>"))
    entries = [("a.eml", pos), ("a.eml", neg), ("b.eml", neg), ("sub/b.eml", pos)]
    entries += [("sub/c.eml", pos), ("<c@x>", neg), ("c@x", "0")]
    lines = "".join(f"{key},{label}\n" for key, label in entries)
    labels = write(tmp_path / "labels.csv", "file,label\n" + lines)
    result = ing.ingest(cfg, root, labels_file=labels)
    assert_canonical(cfg, result)
    assert result.records.set_index("subject")["label"].to_dict() == {"b": pos, "c": neg}
    assert result.counts.by_reason == {"conflicting_label": 1}
    (quarantined,) = result.quarantine.to_dict("records")
    assert quarantined["source"].endswith("a.eml")
    assert f"the labels file gives {pos!r} and {neg!r} for 'a.eml'" in quarantined["excerpt"]


def test_a_byte_order_mark_is_no_damage_and_an_empty_html_body_is_missing(cfg, tmp_path):
    """Some editors start a saved message with a UTF-8 byte order mark: its headers still
    parse. An HTML part that shows no text (an image alone) leaves the body missing, flagged as
    a message with no text part is."""
    pos = cfg.problem.positive_class
    image_only = eml(
        "picture",
        '<html><body><img src="cid:x"></body></html>',
        message_id="<img@x>",
        extra="Content-Type: text/html; charset=utf-8\n",
    )
    write(tmp_path / pos / "bom.eml", b"\xef\xbb\xbf" + eml("bom", message_id="<bom@x>").encode())
    write(tmp_path / pos / "img.eml", image_only)
    result = ing.ingest(cfg, tmp_path)
    assert_canonical(cfg, result)
    assert result.counts.quarantined == 0
    records = result.records.set_index("message_id")
    assert records.loc["<bom@x>", "subject"] == "bom" and records.loc["<bom@x>", "body"]
    assert records.loc["<img@x>", "body"] == ""
    assert "missing:body" in records.loc["<img@x>", "quality_flags"].split(",")


# --------------------------------------------------------------------------- malformed input

BROKEN_BOUNDARY = """From: a@example.org
To: b@example.org
Date: Mon, 01 Jan 2024 10:00:00 +0000
Subject: broken
Message-ID: <broken@x>
Content-Type: multipart/mixed; boundary="DECLARED"

--SOMETHING-ELSE
Content-Type: text/plain

the text is still here
--SOMETHING-ELSE--
"""

UNKNOWN_CHARSET = """From: =?x-klingon?q?Worf?= <worf@example.org>
To: b@example.org
Date: Mon, 01 Jan 2024 10:00:00 +0000
Subject: charset
Message-ID: <charset@x>
Content-Type: text/plain; charset="x-klingon"
Content-Transfer-Encoding: 8bit

caf\u00e9 au lait
"""

RECEIVED_ONLY = """Received: from mx.example.org by in.example.org; Tue, 02 Jan 2024 09:00:05 +0000
Received: from out.bulk-mail.biz by mx.example.org; Tue, 02 Jan 2024 08:59:00 +0000
From: a@example.org
To: b@example.org
Subject: no date header
Message-ID: <nodate@x>

body
"""


def _tree_with(cfg, tmp_path: Path, name: str, data: str | bytes) -> ing.IngestResult:
    """Ingest a tree holding one message, in the positive class's folder."""
    folder = tmp_path / cfg.problem.positive_class
    return ing.ingest(cfg, write(folder / name, data).parent.parent)


@pytest.mark.parametrize(
    ("name", "data", "flag"),
    [
        ("boundary.eml", BROKEN_BOUNDARY, "mime:defect"),
        ("charset.eml", UNKNOWN_CHARSET, "charset:unknown"),
        ("nodate.eml", eml(date=None), "missing:received_at"),
        ("baddate.eml", eml(date="the day after tomorrow"), "invalid:date"),
        ("received.eml", RECEIVED_ONLY, "received_at:received_header"),
        ("noid.eml", eml(message_id=None), "missing:message_id"),
        ("nofrom.eml", eml(sender=""), "missing:sender"),
        (
            "badb64.eml",
            eml(extra="Content-Transfer-Encoding: base64\n", body="@@not base64@@"),
            "mime:defect",
        ),
    ],
)
def test_malformed_mail_is_kept_with_a_flag(cfg, tmp_path, name, data, flag):
    result = _tree_with(cfg, tmp_path, name, data)
    assert_canonical(cfg, result)
    assert result.counts.ingested == 1, result.quarantine
    assert flag in flags_of(result.records)


def test_malformed_mail_keeps_what_it_can(cfg, tmp_path):
    broken = _tree_with(cfg, tmp_path / "1", "b.eml", BROKEN_BOUNDARY).records
    assert "the text is still here" in broken["body"][0]
    charset = _tree_with(cfg, tmp_path / "2", "c.eml", UNKNOWN_CHARSET).records
    assert charset["body"][0] == "café au lait" and charset["sender"][0] == "worf@example.org"
    received = _tree_with(cfg, tmp_path / "3", "r.eml", RECEIVED_ONLY).records
    assert received["received_at"][0] == pd.Timestamp("2024-01-02T09:00:05Z")  # the latest hop
    nodate = _tree_with(cfg, tmp_path / "4", "n.eml", eml(date=None)).records
    assert pd.isna(nodate["received_at"][0])  # kept as null: validation quarantines it
    noid = _tree_with(cfg, tmp_path / "5", "i.eml", eml(message_id=None)).records
    again = _tree_with(cfg, tmp_path / "6", "i.eml", eml(message_id=None)).records
    assert noid["message_id"][0] == again["message_id"][0]  # a stable hash of the bytes


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("garbage.bin", random.Random(0).randbytes(4096), "binary_content"),
        ("short.bin", b"\x00\x01\x02\xff", "binary_content"),
        ("notes.txt", "just some notes, no headers\nat all\n", "not_an_email"),
        ("empty.eml", b"", "empty"),
    ],
)
def test_unusable_files_are_quarantined_with_a_reason(cfg, tmp_path, name, data, reason):
    root = tmp_path / "mail"
    write(root / cfg.problem.negative_class / "good.eml", eml())
    bad = write(root / cfg.problem.positive_class / name, data)
    result = ing.ingest(cfg, root)
    assert_canonical(cfg, result)
    assert result.counts.ingested == 1 and result.counts.by_reason == {reason: 1}
    assert result.quarantine["source"][0] == str(bad)


def test_unmappable_label_is_quarantined(cfg, tmp_path):
    pos = cfg.problem.positive_class
    path = write(tmp_path / "c.csv", f"message_id,body,label\nm1,a,{pos}\nm2,b,maybe\nm3,c,\n")
    result = ing.ingest(cfg, path)
    assert_canonical(cfg, result)
    assert list(result.records["message_id"]) == ["m1"]
    assert result.counts.by_reason == {"no_label": 1, "unmappable_label": 1}
    quarantine = result.quarantine.set_index("reason")
    assert quarantine.loc["unmappable_label", "location"] == "line 3"
    assert "maybe" in quarantine.loc["unmappable_label", "excerpt"]


def test_unreadable_csv_lines_and_undecodable_bytes(cfg, tmp_path):
    pos = cfg.problem.positive_class.encode()
    neg = cfg.problem.negative_class.encode()
    data = (
        b"message_id,body,label\n"
        b"m1,fine," + pos + b"\n"
        b"m2,too,many,fields," + neg + b"\n"
        b"m3,caf\xe9 in latin-1," + neg + b"\n"
        b'm4,"' + b"x" * 200_000 + b'",' + pos + b"\n"  # past the csv module's default limit
        b"m5,last," + neg + b"\n"
    )
    result = ing.ingest(cfg, write(tmp_path / "c.csv", data))
    assert_canonical(cfg, result)
    r = result.records.set_index("message_id")
    assert list(r.index) == ["m1", "m3", "m4", "m5"]
    assert r.loc["m4", "body"] == "x" * 200_000  # a long body is a value, not a broken line
    assert (
        r.loc["m3", "body"] == "café in latin-1"
        and "charset:fallback" in r.loc["m3", "quality_flags"]
    )
    assert r.loc["m1", "quality_flags"] == "" or "charset" not in r.loc["m1", "quality_flags"]
    assert result.counts.by_reason == {"unparseable_row": 1}
    assert list(result.quarantine["location"]) == ["line 3"]


def test_corrupt_parquet_is_quarantined_as_a_file(cfg, tmp_path):
    path = write(tmp_path / "broken.parquet", b"PAR1 this is not really parquet")
    result = ing.ingest(cfg, path)
    assert_canonical(cfg, result)
    assert result.counts.read == 1 and result.counts.by_reason == {"unreadable_file": 1}


def test_mangled_messages_never_crash(cfg, tmp_path):
    """Truncated, spliced and bit-flipped variants of real messages: kept or quarantined."""
    rng = random.Random(7)
    originals = [
        s.replace("\n", "\r\n").encode() for s in (HTML_WITH_ATTACHMENTS, ALTERNATIVE, FORWARDED)
    ]
    root = tmp_path / "fuzz" / cfg.problem.positive_class
    for i in range(60):
        data = bytearray(rng.choice(originals))
        cut = rng.randrange(len(data))
        if i % 3 == 0:
            data = data[:cut]
        elif i % 3 == 1:
            data[cut:cut] = rng.choice(originals)[rng.randrange(50) :]
        else:
            for _ in range(20):
                data[rng.randrange(len(data))] = rng.randrange(128, 256)
        write(root / f"{i}.eml", bytes(data))
    result = ing.ingest(cfg, root.parent)
    assert_canonical(cfg, result)
    assert result.counts.read == 60


# --------------------------------------------------------------------------- run()


def test_run_writes_records_and_quarantine(cfg, tmp_path):
    pos, neg = cfg.problem.positive_class, cfg.problem.negative_class
    root = tmp_path / "mail"
    write(root / pos / "a.eml", eml(message_id="<a@x>"))
    write(root / neg / "b.eml", eml(message_id="<b@x>", date=None))
    write(root / neg / "junk.bin", bytes(range(256)))
    out = tmp_path / "data" / "raw" / "emails.parquet"
    result = ing.run(cfg, root, out)
    assert result.counts.read == 3
    written = pd.read_parquet(out)
    assert list(written.columns) == [c.name for c in cfg.data.columns] and len(written) == 2
    assert str(written["received_at"].dtype).endswith("UTC]")
    side = out.with_name("emails.quarantine.parquet")
    assert ing.quarantine_path(out) == side
    assert pd.read_parquet(side)["reason"].tolist() == ["binary_content"]
    # A clean re-run removes the stale quarantine, so the two files always belong together.
    (root / neg / "junk.bin").unlink()
    ing.run(cfg, root, out)
    assert not side.exists()


def test_format_option_and_usage_errors(cfg, tmp_path):
    table = write(
        tmp_path / "export.txt", f"message_id,body,label\nm1,b,{cfg.problem.positive_class}\n"
    )
    assert ing.ingest(cfg, table, fmt="csv").counts.summary() == (
        "read 1, ingested 1, quarantined 0"
    )
    with pytest.raises(FileNotFoundError):
        ing.ingest(cfg, tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="unknown format"):
        ing.ingest(cfg, table, fmt="xlsx")
    with pytest.raises(ValueError, match="labels file"):
        ing.ingest(cfg, tmp_path, labels_file=write(tmp_path / "l.csv", "foo,bar\n1,2\n"))


def test_empty_source_gives_an_empty_canonical_frame(cfg, tmp_path):
    (tmp_path / "nothing").mkdir()
    result = ing.ingest(cfg, tmp_path / "nothing")
    assert_canonical(cfg, result)
    assert result.counts.read == 0 and result.records.empty


def test_worker_processes_give_the_same_result(cfg, tmp_path, monkeypatch):
    pos, neg = cfg.problem.positive_class, cfg.problem.negative_class
    root = tmp_path / "mail"
    for i in range(11):
        write(root / (pos if i % 2 else neg) / f"{i:02}.eml", eml(f"s{i}", message_id=f"<{i}@x>"))
    write(root / pos / "zz.bin", b"\x00garbage")
    monkeypatch.setattr(mail_reader, "MAIL_BATCH", 4)  # several full batches: the pool starts
    pools = []

    class CountingPool(mail_reader.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            pools.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(mail_reader, "ProcessPoolExecutor", CountingPool)
    serial = ing.ingest(cfg, root, workers=1)
    parallel = ing.ingest(cfg, root, workers=2)
    pd.testing.assert_frame_equal(serial.records, parallel.records)
    pd.testing.assert_frame_equal(serial.quarantine, parallel.quarantine)
    assert serial.counts == parallel.counts and serial.counts.read == 12
    assert len(pools) == (1 if sys.platform.startswith("linux") else 0)  # fork only on Linux
    # Tree order: folders then files, sorted, so the output never depends on the file system.
    by_folder = {neg: range(0, 11, 2), pos: range(1, 11, 2)}
    assert list(serial.records["subject"]) == [
        f"s{i}" for folder in sorted(by_folder) for i in by_folder[folder]
    ]
