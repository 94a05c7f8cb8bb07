"""The email pack's evaluation slices: quality with and without links."""

import pandas as pd

from {{cookiecutter.package_name}}.models.evaluate import default_slices, slice_metrics


def test_links_slices_split_rows_by_their_urls(cfg):
    t0 = pd.Timestamp("2026-03-01", tz="UTC")
    raw = pd.DataFrame(
        {
            cfg.data.column("timestamp").name: [t0] * 4,
            cfg.data.entity: ["a@a.org", "b@b.org", "c@c.org", "d@d.org"],
            "urls": ["https://a.org", "", None, "  "],
        }
    )
    masks = default_slices(raw, cfg)
    assert masks["with_links"].tolist() == [True, False, False, False]
    assert masks["without_links"].tolist() == [False, True, True, True]
    metrics = slice_metrics(raw, [1, 0, 1, 0], [0.9, 0.2, 0.8, 0.7], 0.5, masks)
    assert metrics["with_links"]["support"]["rows"] == 1
    assert metrics["without_links"]["fp"] == 1
