"""The Spark backend of the data path: validation and sequence building that scale out to a cluster and
write the same quarantine files and sequence shards as the pyarrow backend (docs/guide/spark.md).

The modules mirror the pyarrow ones, function for function::

    from foundation.data.spark.session import spark_session
    from foundation.data.spark.source import raw_arrow_schema, read_events
    from foundation.data.spark.validate import validate
    from foundation.data.spark.sequences import build_sequences

    spark = spark_session("local[2]")
    result = validate(read_events(spark, schema), schema, raw_arrow=raw_arrow_schema(schema))
    build_sequences(result.frame, schema, "data/synthetic/sequences/pretrain", period="pretrain")

Nothing is imported here, so `foundation.data.spark.backends` (which also runs the pyarrow backend) works
without pyspark installed.
"""
