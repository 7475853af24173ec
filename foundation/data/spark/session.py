"""The SparkSession the Spark data backend runs on, built from config.

`spark_session()` gives a local session (`local[*]`) by default; pass any cluster master (`yarn`,
`spark://host:7077`, `k8s://...`) and extra `conf` to scale out. Under `spark-submit` the master and conf
given on the command line win: `getOrCreate` returns the session spark-submit already configured.

The defaults below are what the backend relies on, not tuning: times are naive UTC everywhere in this
project, so the session time zone must be UTC (a naive parquet timestamp is read in it), and parquet
files written by pandas with nanosecond timestamps must stay readable.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)

DEFAULT_MASTER = "local[*]"
DEFAULT_APP_NAME = "foundation-data"
TIME_ZONE_KEY = "spark.sql.session.timeZone"
DEFAULT_CONF: dict[str, str] = {
    TIME_ZONE_KEY: "UTC",
    # Spark cannot read TIMESTAMP(NANOS) parquet columns otherwise; the backend turns the int64 back into time.
    "spark.sql.legacy.parquet.nanosAsLong": "true",
    "spark.ui.showConsoleProgress": "false",
}


def spark_session(master: str | None = DEFAULT_MASTER, app_name: str = DEFAULT_APP_NAME,
                  conf: Mapping[str, Any] | None = None) -> SparkSession:
    """Get or create the SparkSession for the data backend.

    Args:
        master: Spark master URL (`local[*]`, `local[2]`, `yarn`, `spark://host:7077`, `k8s://...`); None
            leaves it to spark-submit / `spark-defaults.conf`.
        app_name: the application name shown in the Spark UI.
        conf: extra Spark settings (`{"spark.sql.shuffle.partitions": 64, "spark.executor.memory": "8g"}`,
            or nested: `{"spark": {"executor": {"memory": "8g"}}}`); they override `DEFAULT_CONF`.
            `spark.sql.session.timeZone` must stay UTC. Under spark-submit, its master and --conf win.
    Returns:
        the session, with the log level lowered to WARN.
    Raises:
        ValueError: `conf` sets a session time zone other than UTC.
    """
    settings = {**DEFAULT_CONF, **flatten_conf(conf or {})}
    if settings[TIME_ZONE_KEY] not in ("UTC", "Etc/UTC", "+00:00", "Z"):
        raise ValueError(f"spark.conf.{TIME_ZONE_KEY}: must be UTC (event times are naive UTC), "
                         f"got {settings[TIME_ZONE_KEY]!r}")
    if "PYSPARK_GATEWAY_PORT" in os.environ:
        return _submitted_session(app_name, settings)
    if master is not None and str(master).startswith("local") and "PYSPARK_PYTHON" not in os.environ:
        # Local Python workers must be this interpreter (this venv's pyarrow), not whatever `python3` is on
        # PATH; pyspark reads the worker interpreter from this variable when the context starts.
        os.environ["PYSPARK_PYTHON"] = settings.get("spark.pyspark.python", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(str(master))
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _submitted_session(app_name: str, settings: dict[str, str]) -> SparkSession:
    """Under spark-submit (it starts the JVM and hands Python its gateway) the command line's master and
    --conf win; our settings fill in the SQL settings it left unset (the others need --conf)."""
    spark = SparkSession.builder.appName(app_name).getOrCreate()
    given = spark.sparkContext.getConf()
    for key, value in settings.items():
        if given.contains(key):
            continue
        if spark.conf.isModifiable(key):
            spark.conf.set(key, value)
        elif key != "spark.ui.showConsoleProgress":
            logger.warning("spark conf %s=%s ignored under spark-submit; pass it as --conf %s=%s", key, value, key,
                           value)
    return spark


def flatten_conf(conf: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config mappings -> flat Spark keys: {"spark": {"sql": {"shuffle.partitions": 8}}} ->
    {"spark.sql.shuffle.partitions": "8"}, so a Hydra override can name a Spark key with dots
    (`spark.conf.spark.sql.shuffle.partitions=8`); flat keys with dots work too."""
    flat: dict[str, str] = {}
    for key, value in conf.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten_conf(value, name))
        elif value is not None:
            flat[name] = _conf_value(value)
    return flat


def session_from_config(cfg: Mapping[str, Any] | Any) -> SparkSession:
    """`spark_session` from a config node with `master`, `app_name` and `conf` (conf/backend/spark.yaml).

    Args:
        cfg: a mapping or DictConfig; missing keys take the defaults.
    Returns:
        the session.
    """
    conf = cfg.get("conf") if hasattr(cfg, "get") else None
    if conf is not None and not isinstance(conf, dict):
        from omegaconf import OmegaConf  # a DictConfig node

        conf = OmegaConf.to_container(conf, resolve=True)
    return spark_session(master=cfg.get("master", DEFAULT_MASTER), app_name=cfg.get("app_name", DEFAULT_APP_NAME),
                         conf=conf)


def require_utc(spark: SparkSession) -> None:
    """Raise a clear error when the session time zone is not UTC (naive timestamps would shift)."""
    zone = spark.conf.get(TIME_ZONE_KEY)
    if zone not in ("UTC", "Etc/UTC", "+00:00", "Z"):
        raise ValueError(f"{TIME_ZONE_KEY} is {zone!r}: the Spark backend reads and writes naive UTC times; "
                         f"build the session with foundation.data.spark.spark_session or set {TIME_ZONE_KEY}=UTC")


def _conf_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
