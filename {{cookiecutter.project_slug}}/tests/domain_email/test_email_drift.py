"""Drift of the mail world: the monitor flags drifted mail, and only drifted mail."""

import pandas as pd

from {{cookiecutter.package_name}} import profiles
from {{cookiecutter.package_name}}.data import synthetic
from {{cookiecutter.package_name}}.domain.email.synthetic_world import spam_rate
from {{cookiecutter.package_name}}.monitoring import drift

RULES = {"psi_max": 0.2, "missing_max": 0.1, "warn_fraction": 0.5, "min_rows": 200}


def _synthetic(cfg, n: int, seed: int, drift_level: float) -> pd.DataFrame:
    # Keep the number of negatives fixed: the generator then draws the same legitimate world
    # (people, companies, newsletters) and only the positives and their campaigns drift.
    total = round(n * (1 - spam_rate(0.0)) / (1 - spam_rate(drift_level)))
    return synthetic.generate(cfg, total, seed, days=30, drift=drift_level)


def test_synthetic_drift_is_flagged_only_when_the_world_moves(cfg):
    reference_corpus = _synthetic(cfg, 20_000, 3, 0.0)
    days = (reference_corpus["received_at"] - reference_corpus["received_at"].min()).dt.days
    # The reference: the first 12 days, like a validation split before the traffic.
    reference = profiles.input_profiles(cfg, reference_corpus[days < 12])
    assert set(reference["categories"]) == {
        "sender_domain",
        "reply_to",
        "content_type",
        "attachment_types",
    }
    assert set(reference["text"]) == {"subject", "body"}  # urls: structured, not prose
    signals = profiles.InputSignals(reference)
    verdicts = {}
    for level in (0.0, 0.8):
        corpus = reference_corpus if level == 0 else _synthetic(cfg, 20_000, 3, level)
        later = corpus[(corpus["received_at"] - corpus["received_at"].min()).dt.days >= 18]
        window = pd.DataFrame(signals.row_signals(later.iloc[:3000]))
        verdicts[level] = drift.data_drift(reference, window, **RULES)
    assert all(r.status == "ok" for r in verdicts[0.0]), [r.reason for r in verdicts[0.0]]
    alerts = [r for r in verdicts[0.8] if r.status == "alert"]
    assert alerts and {r.kind for r in alerts} <= {"text", "category"}
    assert "body" in {r.name for r in alerts}
    assert verdicts[0.8][0].status == "alert"  # worst first
