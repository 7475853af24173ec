"""Side-by-side benchmark against pytorch-lifestream (ptls), the reference event-sequence library.

`harness.run_lifestream_benchmark` (our environment) drives `run_coles.py` inside the isolated ptls
environment made by `setup_env.sh`; `fixture.write_sequence_fixture` writes small shards to try it on.
"""
