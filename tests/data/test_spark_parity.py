"""The Spark backend writes what the pyarrow backend writes: quarantine counts and files, shards, manifests.

One local Spark session (`local[2]`, 4 shuffle partitions) serves the module; starting it costs ~10-40 s, so
every test that uses it is `slow`. Skipped (with the reason) only when Java or pyspark is missing.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from foundation.data.events import read_events as read_events_pyarrow
from foundation.data.schema import DataSchema, DataValidationError
from foundation.data.sequences import SequenceManifest
from foundation.data.sequences import build_sequences as build_sequences_pyarrow
from foundation.data.synthetic import synthetic_config, write_synthetic
from foundation.data.validate import validate as validate_pyarrow

pytestmark = pytest.mark.spark

if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("Spark parity tests need Java (no `java` on PATH and no JAVA_HOME)", allow_module_level=True)
pytest.importorskip("pyspark", reason="Spark parity tests need pyspark (pip install -e '.[spark]')")

from foundation.data.spark.backends import build_sequence_folder  # noqa: E402  (after the skip: pyspark)
from foundation.data.spark.conversion import strptime_to_java  # noqa: E402
from foundation.data.spark.sequences import build_sequences as build_sequences_spark  # noqa: E402
from foundation.data.spark.session import flatten_conf, spark_session  # noqa: E402
from foundation.data.spark.source import raw_arrow_schema, read_events  # noqa: E402
from foundation.data.spark.validate import validate as validate_spark  # noqa: E402
from tests.scripts import load_script  # noqa: E402

CONF = Path(__file__).resolve().parents[2] / "conf"
FLOAT_RTOL = 1e-9  # aggregate sums are added in Spark's order, not numpy's


@pytest.fixture(scope="module")
def spark():
    session = spark_session("local[2]", app_name="test-spark-parity",
                                          conf={"spark.sql.shuffle.partitions": 4, "spark.ui.enabled": False})
    yield session
    session.stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A 20k-event synthetic world plus planted bad rows in a file that sorts *before* part-00000.parquet
    ('-' < '.'), so input row numbers and "first occurrence" depend on sorted-file order."""
    root = tmp_path_factory.mktemp("spark_world")
    config = synthetic_config(n_events=20_000, n_customers=200, n_merchants=300, n_issuers=8, block_customers=128,
                              blocks_per_file=1, events_dir=str(root / "events"))
    write_synthetic(config, progress=False)
    first = pq.read_table(root / "events" / "part-00000.parquet")
    bad = first.slice(0, 7).to_pylist()
    bad[0]["amount"] = -5.0  # negative_value.amount
    bad[1]["card_id"] = None  # null_entity_key.customer
    bad[2]["amount"] = float("nan")  # nan_value.amount
    bad[3]["ts"] = None  # null_timestamp
    bad[4]["amount"] = None  # null_value.amount
    bad[5]["issuer_id"] = None  # null_entity_key.issuer
    # bad[6] is an exact copy of row 6 of part-00000. This earlier file holds the first occurrence, so row 6
    # of part-00000 is the duplicate_event_id (rows 0-5 are kept: their early twins are quarantined).
    pq.write_table(pa.Table.from_pylist(bad, schema=first.schema), root / "events" / "part-00000-early.parquet")
    return root


def schema_for(world: Path, **overrides) -> DataSchema:
    return DataSchema.from_yaml(CONF / "data" / "synthetic.yaml", root={"paths": {"data_dir": str(world)}},
                                overrides=[f"source.path={world / 'events'}", *[f"{k}={v}" for k, v in overrides.items()]])


def compose_build(world: Path, out: Path, backend: str, *overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("build_sequences", overrides=[
            f"backend={backend}", f"paths.data_dir={world}", f"data.source.path={world / 'events'}",
            f"data.validation.quarantine_dir={out / 'quarantine'}", f"out_dir={out / 'sequences'}",
            *(["spark.master='local[2]'", "spark.conf.spark.sql.shuffle.partitions=4"] if backend == "spark" else []),
            *overrides])


def assert_same_parquet(expected: Path, actual: Path, float_tolerance: bool = False) -> None:
    """Same Arrow schema, same rows in the same order; list<float64> within FLOAT_RTOL when asked."""
    a, b = pq.read_table(expected), pq.read_table(actual)
    assert a.schema.equals(b.schema, check_metadata=False), f"{actual}: schema {b.schema} != {a.schema}"
    assert a.num_rows == b.num_rows, f"{actual}: {b.num_rows} rows, expected {a.num_rows}"
    for name in a.column_names:
        x, y = a.column(name), b.column(name)
        floats = pa.types.is_floating(x.type) or (pa.types.is_list(x.type) and pa.types.is_floating(x.type.value_type))
        if not floats:
            assert x.equals(y), f"{actual}: column {name} differs"
            continue
        if pa.types.is_list(x.type):
            assert pc.list_value_length(x).equals(pc.list_value_length(y)), f"{actual}: {name} list lengths differ"
            x, y = pc.list_flatten(x), pc.list_flatten(y)
        xs, ys = (c.to_numpy(zero_copy_only=False).astype(float) for c in (x, y))
        assert np.array_equal(np.isnan(xs), np.isnan(ys)), f"{actual}: {name} nulls/NaNs differ"
        rtol = FLOAT_RTOL if float_tolerance else 0.0
        np.testing.assert_allclose(ys, xs, rtol=rtol, atol=0, equal_nan=True, err_msg=f"{actual}: {name}")


def assert_same_sequences(expected: Path, actual: Path) -> None:
    assert (actual / "manifest.json").read_text() == (expected / "manifest.json").read_text()
    manifest = SequenceManifest.read(expected)
    for entity_type, stats in manifest.entity_types.items():
        files = sorted(p.name for p in (actual / entity_type).iterdir())
        assert files == sorted(Path(s).name for s in stats.shards), f"{entity_type}: files {files}"
        for shard in stats.shards:
            assert_same_parquet(expected / shard, actual / shard, float_tolerance=stats.representation == "aggregate")


def assert_same_quarantine(expected: Path, actual: Path) -> None:
    names = sorted(p.name for p in expected.iterdir())
    assert sorted(p.name for p in actual.iterdir()) == names
    assert (actual / "_summary.json").read_text() == (expected / "_summary.json").read_text()
    for name in names:
        if name.endswith(".parquet"):
            assert_same_parquet(expected / name, actual / name)


@pytest.mark.slow
def test_build_from_config_matches_pyarrow(spark, world, tmp_path):
    """scripts/build_sequences.py's job with backend=pyarrow and backend=spark: same quarantine, same shards."""
    reports = {}
    for backend in ("pyarrow", "spark"):
        cfg = compose_build(world, tmp_path / backend, backend, "period=pretrain", "entities_per_shard=64")
        reports[backend] = build_sequence_folder(cfg)
    expected, actual = reports["pyarrow"], reports["spark"]
    assert actual.quarantine_counts == expected.quarantine_counts
    assert list(expected.quarantine_counts) == ["null_timestamp", "null_entity_key.customer", "null_entity_key.issuer",
                                                "nan_value.amount", "null_value.amount", "negative_value.amount",
                                                "duplicate_event_id"]
    assert actual.input_rows == expected.input_rows
    duplicates = pq.read_table(tmp_path / "spark" / "quarantine" / "duplicate_event_id.parquet")
    assert duplicates.column("_source_row").to_pylist() == [7 + 6]  # the original, after the 7 early rows
    assert_same_quarantine(tmp_path / "pyarrow" / "quarantine", tmp_path / "spark" / "quarantine")
    assert_same_sequences(expected.out_dir, actual.out_dir)
    manifest = expected.manifest.entity_types
    assert len(manifest["customer"].shards) > 1 and len(manifest["merchant"].shards) > 1
    assert manifest["issuer"].skipped_partial_bucket == 0 and manifest["issuer"].representation == "aggregate"


@pytest.mark.slow
def test_row_number_ids_history_window_and_pinned_counts(spark, world, tmp_path):
    """No event id column (ids are input row numbers in sorted-file order), `until` window with partial
    buckets cut off at an unaligned end, pinned aggregate columns."""
    schema = dataclasses.replace(schema_for(world), event_id=None)
    options = {"until": "2024-03-10T10:59:59", "entities_per_shard": 100, "count_values": {"issuer": ["refund", "charge"]}}
    result = validate_pyarrow(read_events_pyarrow(schema), schema, quarantine_dir=tmp_path / "q_pa")
    build_sequences_pyarrow(result.table, schema, tmp_path / "pa", **options)
    spark_result = validate_spark(read_events(spark, schema), schema,
                                          quarantine_dir=tmp_path / "q_sp", raw_arrow=raw_arrow_schema(schema))
    try:
        manifest = build_sequences_spark(spark_result.frame, schema, tmp_path / "sp", **options)
    finally:
        spark_result.unpersist()
    assert spark_result.quarantine_counts == result.quarantine_counts
    assert "duplicate_event_id" not in result.quarantine_counts  # row numbers never repeat
    assert manifest.entity_types["issuer"].skipped_partial_bucket > 0
    assert manifest.entity_types["issuer"].count_values == ["charge", "refund"]
    assert_same_quarantine(tmp_path / "q_pa", tmp_path / "q_sp")
    assert_same_sequences(tmp_path / "pa", tmp_path / "sp")


@pytest.mark.slow
def test_label_events_match_pyarrow(spark, world, tmp_path):
    """`label_events`: Spark appends the same landed-label events, so the shards are the same."""
    schema = schema_for(world, label_events="[is_fraud]")
    result = validate_pyarrow(read_events_pyarrow(schema), schema, quarantine_dir=tmp_path / "q_pa")
    assert result.n_label_events > 0
    build_sequences_pyarrow(result.table, schema, tmp_path / "pa", entities_per_shard=100)
    spark_result = validate_spark(read_events(spark, schema), schema, quarantine_dir=tmp_path / "q_sp",
                                  raw_arrow=raw_arrow_schema(schema))
    try:
        build_sequences_spark(spark_result.frame, schema, tmp_path / "sp", entities_per_shard=100)
    finally:
        spark_result.unpersist()
    assert_same_sequences(tmp_path / "pa", tmp_path / "sp")


CSV_HEADER = "time;card;terminal;amt;mcc;result;settled;fraud_flag\n"


def write_csv(folder: Path, seed: int = 0) -> None:
    """Two messy CSV files: ISO times with and without offsets, fractions, a garbage time, keys with leading
    zeros, empty, quoted-empty and blank keys, padded/blank/non-numeric/NaN/negative/zero amounts, non-ASCII ids,
    a strptime-format time field with one- and two-digit parts and values in another layout, and a stray
    notes.txt that both backends skip."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    times = ["2024-01-0{d}T1{h}:0{m}:00", "2024-01-0{d} 1{h}:0{m}:05.25", "2024-01-0{d}T1{h}:0{m}:00Z",
             "2024-01-0{d}T1{h}:0{m}:00+02:00", "2024-01-0{d}", " 2024-01-0{d} 1{h}:0{m} "]
    cards = ["0012", "12", "äb", "c9", "C10", "c1", '""', "", "  ", '" \t "']
    amounts = ["12.5", " 3 ", "1e2", "7", "-3", "", "abc", "nan", "0"]  # "0" is on the min: 0 boundary
    settled = ["1/2/2024 3:04", "01/02/2024 13:04", "15/01/2024 23:59", "2024-01-15", "", "7/1/2024 0:00"]
    for part in range(2):
        lines = [CSV_HEADER]
        for _ in range(150):
            time = rng.choice(times).format(d=rng.integers(1, 9), h=rng.integers(0, 9), m=rng.integers(0, 9))
            if rng.random() < 0.02:
                time = "2024-02-30T10:00:00"
            card = rng.choice(cards, p=[0.2, 0.15, 0.15, 0.15, 0.15, 0.12, 0.02, 0.02, 0.02, 0.02])
            amount = rng.choice(amounts, p=[0.3, 0.1, 0.1, 0.3, 0.04, 0.04, 0.04, 0.04, 0.04])
            lines.append(f"{time};{card};T{rng.integers(0, 6)};{amount};{rng.choice(['5411', '5812', ''])};"
                         f"{rng.choice(['approved', 'declined'])};{rng.choice(settled)};{rng.choice(['0', '1', ''])}\n")
        (folder / f"part-{part}.csv").write_text("".join(lines))
    (folder / "notes.txt").write_text("exported by hand; not data\n")


def csv_schema(folder: Path, on_error: str = "quarantine") -> DataSchema:
    return DataSchema.from_config({
        "name": "pos", "source": {"path": str(folder), "format": "csv", "delimiter": ";"},
        "timestamp": {"column": "time"}, "event_id": None,
        "entities": {"customer": {"column": "card"}, "merchant": {"column": "terminal"}},
        "fields": {"amount": {"column": "amt", "type": "numeric", "min": 0, "allow_null": False},
                   "mcc": {"column": "mcc", "type": "categorical"},
                   "result": {"column": "result", "type": "categorical", "outcome": True},
                   "settled": {"column": "settled", "type": "timestamp", "format": "%d/%m/%Y %H:%M"}},
        "labels": {"is_fraud": {"column": "fraud_flag"}},
        "splits": {"pretrain": {"start": "2024-01-01", "end": "2024-01-06"}},
        "validation": {"on_error": on_error, "quarantine_dir": str(folder.parent / "quarantine")}})


@pytest.mark.slow
def test_csv_source_matches_pyarrow(spark, tmp_path):
    """CSV read as text: row numbers across files, null/empty/quoted-empty/blank keys, ISO parsing, number
    parsing, a non-data file skipped by both backends."""
    write_csv(tmp_path / "pos")
    schema = csv_schema(tmp_path / "pos")
    result = validate_pyarrow(read_events_pyarrow(schema), schema, quarantine_dir=tmp_path / "q_pa")
    build_sequences_pyarrow(result.table, schema, tmp_path / "pa", period="pretrain", entities_per_shard=3)
    spark_result = validate_spark(read_events(spark, schema), schema,
                                          quarantine_dir=tmp_path / "q_sp", raw_arrow=raw_arrow_schema(schema))
    try:
        build_sequences_spark(spark_result.frame, schema, tmp_path / "sp", period="pretrain",
                                      entities_per_shard=3)
    finally:
        spark_result.unpersist()
    assert {"unparsable_timestamp", "null_entity_key.customer", "wrong_type.amount", "nan_value.amount",
            "null_value.amount", "negative_value.amount", "unparsable_timestamp.settled"} <= set(result.quarantine_counts)
    assert spark_result.quarantine_counts == result.quarantine_counts
    blank_keys = pq.read_table(tmp_path / "q_pa" / "null_entity_key.customer.parquet")["card"].to_pylist()
    assert {"  ", " \t "} <= set(blank_keys)  # whitespace-only keys are quarantined like null ones
    assert_same_quarantine(tmp_path / "q_pa", tmp_path / "q_sp")
    assert_same_sequences(tmp_path / "pa", tmp_path / "sp")


@pytest.mark.slow
def test_raise_reports_the_same_problems(spark, tmp_path):
    write_csv(tmp_path / "pos", seed=1)
    schema = csv_schema(tmp_path / "pos", on_error="raise")
    with pytest.raises(DataValidationError) as expected:
        validate_pyarrow(read_events_pyarrow(schema), schema)
    with pytest.raises(DataValidationError) as actual:
        validate_spark(read_events(spark, schema), schema)
    summary = [(p.reason, p.column, p.key, p.count, p.example_row, p.example) for p in expected.value.problems]
    assert [(p.reason, p.column, p.key, p.count, p.example_row, p.example) for p in actual.value.problems] == summary
    assert str(actual.value) == str(expected.value)
    assert not (tmp_path / "quarantine").exists()


@pytest.mark.slow
def test_missing_row_numbers_is_a_clear_error(spark, world):
    schema = schema_for(world)
    raw = read_events(spark, schema).drop("_source_row")
    with pytest.raises(ValueError, match="_source_row.*read_events"):
        validate_spark(raw, schema)


def test_strptime_formats_become_java_patterns():
    assert strptime_to_java("%d/%m/%Y %H:%M") == "d'/'M'/'yyyy' 'H':'m"  # 1-2 digit fields, like strptime
    assert strptime_to_java("%Y%m%d %H%M") == "yyyyMMdd' 'HHmm"  # adjacent fields need fixed widths
    assert strptime_to_java("%d %b %Y, %I %p 100%%") == "d' 'MMM' 'yyyy', 'h' 'a' 100%'"
    with pytest.raises(ValueError, match="%z is not supported"):
        strptime_to_java("%Y-%m-%d %z")


def test_spark_conf_nests_and_stays_utc():
    assert flatten_conf({"spark": {"sql": {"shuffle.partitions": 8}, "ui": {"enabled": False}},
                         "spark.executor.memory": "8g"}) == {
        "spark.sql.shuffle.partitions": "8", "spark.ui.enabled": "false", "spark.executor.memory": "8g"}
    with pytest.raises(ValueError, match="timeZone: must be UTC"):
        spark_session("local[1]", conf={"spark.sql.session.timeZone": "Europe/Paris"})


def test_script_quotes_local_masters_for_hydra():
    script = load_script("build_sequences")
    assert script.quote_master(["x.py", "spark.master=local[2]", "period=all", "spark.master='local[4]'"]) == [
        "x.py", "spark.master='local[2]'", "period=all", "spark.master='local[4]'"]
