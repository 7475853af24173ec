"""Load-test a service on this machine: python scripts/loadtest.py loadtest.requests=500

/v1/score p50/p99/p99.9 and requests/s at 1, 4 and 16 clients with a profile table (HTTP+queue, features,
model, head), then /v1/events in batches of 1,000. Loopback targets only; bounded in requests and seconds
(conf/serve.yaml `loadtest`)."""

import hydra
from omegaconf import DictConfig

from foundation.cli import run_cli


@hydra.main(version_base="1.3", config_path="../conf", config_name="serve")
def main(cfg: DictConfig) -> None:
    from foundation.serving.loadtest import run_loadtest

    run_cli(lambda: run_loadtest(cfg) and None)


if __name__ == "__main__":
    main()
