"""Write the synthetic payments world: `python scripts/generate_data.py synthetic.n_events=10000000`."""

import hydra
from omegaconf import DictConfig

from foundation.data.synthetic import generate


@hydra.main(version_base="1.3", config_path="../conf", config_name="generate")
def main(cfg: DictConfig) -> None:
    summary = generate(cfg)
    print(f"{summary.n_events:,} events -> {summary.path} in {summary.seconds:.1f}s "
          f"({summary.events_per_second:,.0f} events/s)")
    print(f"event types {summary.event_type_counts}; fraud {summary.fraud_rate:.2%} of attempts, "
          f"declines {summary.decline_rate:.2%} of attempts, disputes {summary.dispute_rate:.2%} of events")


if __name__ == "__main__":
    main()
