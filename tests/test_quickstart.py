"""The quickstart's data banner names the configured dataset, not always the synthetic world."""

from __future__ import annotations

from hydra import compose, initialize_config_dir

from foundation.quickstart import data_banner
from tests.embeddings.world import REPO


def _config(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("pretrain", overrides=["paths.root_dir=/tmp/qs", *overrides])


def test_banner_names_the_dataset_and_its_source():
    synthetic = data_banner(_config())
    assert synthetic.startswith("data: dataset synthetic (synthetic payments world in /tmp/qs/")
    sparkov = data_banner(_config("data=sparkov", "data.source.path=/data/tx.parquet"))
    assert sparkov.startswith("data: dataset sparkov (/data/tx.parquet) ->")
    assert "synthetic" not in sparkov
