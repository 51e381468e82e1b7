"""The badge collection ``quality/robustness.py`` renders honours the dataset contract.

The robustness check is only a check of the defaults if the product reads that collection
the way it reads any customer's: validation keeps every row and the labels are the rendered ones.
"""

from __future__ import annotations

import pandas as pd

from amnet.data.validate import validate_dataset
from tests.helpers import load_quality


def test_rendered_badges_pass_validation_with_their_own_vocabulary(tmp_path):
    bench = load_quality("robustness")
    out = tmp_path / "badges"
    bench.generate(str(out), num_images=24, seed=3, size=64)
    result = validate_dataset(str(out), progress=False)
    assert result.rows_in == 24 and result.num_kept == 24 and result.num_quarantined == 0
    assert list(result.vocab.names) == ["glyph", "ink", "shape", "fill", "border"]
    manifest = pd.read_parquet(out / "manifest.parquet")
    first = manifest.iloc[0]
    kept = result.kept.set_index("image_id").loc[first["image_id"], "labels"]
    assert [result.vocab.attributes[i].values[v] for i, v in enumerate(kept)] == [
        first[name] for name in result.vocab.names]


def test_rendering_is_a_function_of_the_seed(tmp_path):
    bench = load_quality("robustness")
    bench.generate(str(tmp_path / "a"), num_images=6, seed=1, size=64)
    bench.generate(str(tmp_path / "b"), num_images=6, seed=1, size=64)
    bench.generate(str(tmp_path / "c"), num_images=6, seed=2, size=64)
    a, b, c = (pd.read_parquet(tmp_path / x / "manifest.parquet") for x in "abc")
    assert (tmp_path / "a" / a.image[0]).read_bytes() == (tmp_path / "b" / b.image[0]).read_bytes()
    assert a.drop(columns="image_id").equals(b.drop(columns="image_id"))
    assert not a.drop(columns=["image_id", "image"]).equals(c.drop(columns=["image_id", "image"]))
