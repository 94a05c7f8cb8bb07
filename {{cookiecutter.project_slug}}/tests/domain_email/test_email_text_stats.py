"""Text statistics: phrase counts are ``str.count`` after undoing l33t spelling, and a row gets
the same values alone as in any batch (the phrases are searched in the whole batch at once)."""

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from test_hostile_text import AWKWARD

from {{cookiecutter.package_name}}.domain.email.text_stats import SUSPICIOUS_PHRASES, TextStats

# Phrases, l33t spellings, phrases run together, and one that repeats past the batch search's
# budget per row (which then counts row by row).
PIECES = [
    "free", "FR33", "Fr€€", "click here", "cl1ck h3r3", "c4sh", "you have won", "YOU WON",
    "freefree", "log in", "l0g1n", "unsubscribe", "fr33 " * 40, "$ave", "€", "£", "!",
]  # fmt: skip
mail_text = st.lists(
    st.one_of(st.sampled_from(PIECES + AWKWARD), st.text(max_size=6)), max_size=10
).map("".join)
UNDO_LEET = str.maketrans("013457$", "oieasts")


@settings(max_examples=200, deadline=None)
@given(st.lists(mail_text, min_size=1, max_size=30))
def test_phrase_counts_are_str_counts_alone_or_in_a_batch(texts):
    stats = TextStats(("body",))
    frame = pd.DataFrame({"body": texts}, dtype=object)  # object: a lone surrogate fits
    batch = stats.transform(frame)
    alone = np.vstack([stats.transform(frame.iloc[[i]]) for i in range(len(texts))])
    np.testing.assert_array_equal(batch, alone)
    names = list(stats.get_feature_names_out())
    for row, text in zip(batch, texts, strict=True):
        plain = text.lower().translate(UNDO_LEET)
        counts = {p: sum(map(plain.count, s)) for p, s in SUSPICIOUS_PHRASES.items()}
        for phrase, count in counts.items():
            assert row[names.index(f"text_phrase_{phrase}")] == count
        assert row[names.index("text_phrase_total")] == sum(counts.values())
        assert row[names.index("text_exclamations")] == text.count("!")
        assert row[names.index("text_currency_symbols")] == sum(map(text.count, "$€£"))
