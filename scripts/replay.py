"""Stream an events file through a service on this machine: python scripts/replay.py replay.rate=500

Loopback targets only; bounded by replay.max_events and replay.max_seconds (conf/serve.yaml)."""

import hydra
from omegaconf import DictConfig

from foundation.cli import run_cli


@hydra.main(version_base="1.3", config_path="../conf", config_name="serve")
def main(cfg: DictConfig) -> None:
    from foundation.serving.replay import replay_from_config

    run_cli(lambda: replay_from_config(cfg) and None)


if __name__ == "__main__":
    main()
