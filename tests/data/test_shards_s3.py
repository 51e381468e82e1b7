"""The data layer against a real S3 server (SeaweedFS): dataset and split shards round-trip."""

from __future__ import annotations

import json

import pandas as pd

from amnet import storage
from amnet.cli import main
from amnet.config import SplitConfig
from amnet.data import shards
from amnet.data.split import run_split
from amnet.data.synth import generate
from amnet.data.validate import validate_dataset


def test_synth_validate_split_on_s3(s3_env, tmp_path):
    bucket = s3_env.bucket
    dataset = f"s3://{bucket}/datasets/tiny"
    generate(dataset, num_images=500, seed=5, image_size=64, progress=False)
    assert storage.exists(f"{dataset}/manifest.parquet")
    result = validate_dataset(dataset, progress=False)
    assert result.rows_in == 500 and len(result.kept) + len(result.quarantine) == 500

    out = f"s3://{bucket}/splits/tiny"
    cfg = SplitConfig(per_value=6, gallery_size=150, num_queries=15, shard_size=100, seed=1)
    summary = run_split(dataset, out, cfg, progress=False)
    remote = json.loads(storage.read_text(f"{out}/split.json"))
    assert remote["gallery"] == 150 == summary["gallery"]
    gallery = shards.read_shards(f"{out}/gallery")
    assert len(gallery) == 150 and len(shards.list_shards(f"{out}/gallery")) == 2

    # the same split written locally is identical: S3 is only a transport
    local = tmp_path / "split"
    run_split(dataset, str(local), cfg, progress=False)
    pd.testing.assert_frame_equal(shards.read_shards(str(local / "gallery")), gallery)


def test_dataset_in_missing_bucket_is_one_clear_error(s3_env, capsys):
    code = main(["data", "validate", "s3://no-such-bucket-amnet/ds"])
    err = capsys.readouterr().err
    assert code == 3
    assert "does not exist" in err and "no-such-bucket-amnet" in err and "Traceback" not in err
