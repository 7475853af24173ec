"""Write the synthetic payments world where pretraining reads it:
`python scripts/generate_data.py [experiment=smoke] [synthetic.n_events=10000000]`."""

import sys

import hydra
from omegaconf import DictConfig

from foundation.cli import run_cli
from foundation.data.synthetic import generate


@hydra.main(version_base="1.3", config_path="../conf", config_name="generate")
def main(cfg: DictConfig) -> None:
    if str(cfg.data.get("name")) != "synthetic":
        print(f"error: data={cfg.data.get('name')} reads recorded data from {cfg.data.source.path}; "
              "generate_data.py writes the synthetic world only (data=synthetic)", file=sys.stderr)
        raise SystemExit(2)
    run_cli(lambda: report(generate(cfg)))


def report(summary):
    """Print the generation summary; the events folder is returned, so it is the last line printed."""
    print(f"{summary.n_events:,} events -> {summary.path} in {summary.seconds:.1f}s "
          f"({summary.events_per_second:,.0f} events/s)")
    print(f"event types {summary.event_type_counts}; fraud {summary.fraud_rate:.2%} of attempts, "
          f"declines {summary.decline_rate:.2%} of attempts, disputes {summary.dispute_rate:.2%} of events")
    return summary.path


if __name__ == "__main__":
    main()
