"""Train pytorch-lifestream CoLES on our sequence shards, time it, and write its embeddings.

Runs INSIDE the isolated ptls environment (benchmarks/lifestream/setup_env.sh); imports only ptls, torch,
pytorch-lightning (ptls trains with it), numpy, pyarrow and tqdm (a pytorch-lightning dependency), plus the
sibling shard_features module. Our side calls it through benchmarks/lifestream/harness.py.

    .venv-lifestream/bin/python benchmarks/lifestream/run_coles.py --seq-dir DIR --out OUT \
        --encoder rnn --hidden 128 --steps 200 --labels is_fraud,approved --exclude merchant_descriptor

Writes into --out:
- result.json: {encoder, hidden, events_per_s, steps, params, wall_s, ...} (see `main`)
- model.pt (state_dict of the ptls sequence encoder; tensors only) and features.json (vocabularies),
  so `--init-from OUT --steps 0` embeds other shards with the same model
- entity_embeddings.parquet: (entity_type, entity_id, as_of, n_events, embedding) after the last event
- pit_embeddings.parquet: (entity_type, entity_id, event_id, event_time, has_history, embedding), the
  state of the entity's history strictly before each event (zeros and has_history 0 for a first event)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytorch_lightning as pl
import torch
from ptls.data_load.padded_batch import PaddedBatch
from ptls.frames.coles import ColesDataset, CoLESModule
from ptls.frames.coles.split_strategy import SampleSlices, SplitRandom
from ptls.nn import RnnSeqEncoder, TransformerSeqEncoder, TrxEncoder
from shard_features import FeatureEncoder, FlatSequences, infer_columns, read_sequences, shard_paths
from tqdm.auto import tqdm

ENCODERS = ("rnn", "transformer")


class FlatFeatureDicts(torch.utils.data.Dataset):
    """ptls feature dicts served as zero-copy slices of the flat arrays (no per-entity Python objects).

    Args:
        features: name -> (N,) array from `FeatureEncoder.transform`.
        time_s: (N,) event time in seconds (ptls splitters only read its length).
        offsets: (E + 1,) row offsets; entities: (K,) indices of the entities to serve.
    """

    def __init__(self, features: dict[str, np.ndarray], time_s: np.ndarray, offsets: np.ndarray,
                 entities: np.ndarray):
        self.tensors = {k: torch.from_numpy(v) for k, v in features.items()}
        self.tensors["event_time"] = torch.from_numpy(time_s)
        self.offsets = offsets
        self.entities = entities

    def __len__(self) -> int:
        return len(self.entities)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        e = self.entities[i]
        s, t = int(self.offsets[e]), int(self.offsets[e + 1])
        return {k: v[s:t] for k, v in self.tensors.items()}


class ThroughputMeter(pl.Callback):
    """Counts real events (sum of `seq_lens` over every CoLES sub-sequence) per training batch.

    Batches `< warmup` are excluded. `wall_s` runs from the end of the last warmup batch to the end of the
    last batch, so it includes data loading and sub-sequence sampling; `step_s` is the sum of the
    batch-start -> batch-end times (forward, backward, optimizer) only; the process CPU time over the same
    span gives events per CPU-second, which moves less when other jobs share the cores.
    """

    def __init__(self, warmup: int, log_every: int = 20):
        self.warmup, self.log_every = warmup, log_every
        self.batches, self.events, self.step_s = 0, 0, 0.0
        self.wall_start = self.wall_end = self._t0 = None
        self.cpu_start = self.cpu_end = None  # process CPU time: less sensitive to other load on a shared box
        self.last_loss = float("nan")

    def on_train_start(self, trainer, pl_module) -> None:
        if self.warmup == 0:
            self.wall_start, self.cpu_start = time.perf_counter(), time.process_time()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self.batches >= self.warmup:
            self.step_s += now - self._t0
            self.events += int(batch[0].seq_lens.sum())
            self.wall_end, self.cpu_end = now, time.process_time()
        self.batches += 1
        if self.batches == self.warmup:
            self.wall_start, self.cpu_start = now, time.process_time()
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.last_loss = float(loss.detach()) if torch.is_tensor(loss) else float("nan")
        if self.batches % self.log_every == 0:
            rate = self.events / (now - self.wall_start) if self.wall_start and now > self.wall_start else 0.0
            print(f"step {self.batches}: loss {self.last_loss:.4f}, {rate:,.0f} events/s", file=sys.stderr)


def build_encoder(kind: str, enc: FeatureEncoder, args: argparse.Namespace) -> torch.nn.Module:
    """A ptls sequence encoder over our fields at width `args.hidden`.

    The GRU's width is its hidden size; the transformer's is its input size, so its TrxEncoder gets a
    linear projection to `hidden` (ptls' way to set a transformer's width).
    """
    embeddings = {name: {"in": size, "out": min(args.emb_dim, size)} for name, size in enc.cardinalities().items()}
    # 'log' = sign * log1p|x| (ptls' usual choice for amounts); time_gap is log1p already.
    numeric = {name: ("identity" if name == "time_gap" else "log") for name in enc.numeric_inputs()}
    if kind == "rnn":
        trx = TrxEncoder(embeddings=embeddings, numeric_values=numeric)
        return RnnSeqEncoder(trx_encoder=trx, hidden_size=args.hidden, type="gru", num_layers=args.rnn_layers)
    trx = TrxEncoder(embeddings=embeddings, numeric_values=numeric, linear_projection_size=args.hidden)
    return TransformerSeqEncoder(trx_encoder=trx, n_heads=args.heads, dim_hidden=args.ffn or 4 * args.hidden,
                                 n_layers=args.layers, dropout=0.1)


def train(seq_encoder: torch.nn.Module, dataset: FlatFeatureDicts, args: argparse.Namespace) -> dict:
    """CoLES pretraining for `args.steps` optimizer steps; returns the throughput figures."""
    if args.splitter == "sample_slices":
        splitter = SampleSlices(split_count=args.split_count, cnt_min=args.min_len, cnt_max=args.max_len)
    else:
        splitter = SplitRandom(split_count=args.split_count, cnt_min=args.min_len, cnt_max=args.max_len)
    coles = ColesDataset(dataset, splitter=splitter)
    loader = torch.utils.data.DataLoader(coles, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                         collate_fn=ColesDataset.collate_fn, num_workers=0)
    if len(loader) == 0:
        raise ValueError(f"{len(dataset)} training entities with >= {args.min_len} events: fewer than one batch "
                         f"of {args.batch_size}")
    module = CoLESModule(
        seq_encoder=seq_encoder,
        optimizer_partial=partial(torch.optim.Adam, lr=args.lr),
        lr_scheduler_partial=partial(torch.optim.lr_scheduler.StepLR, step_size=max(1, args.steps // 10), gamma=0.9),
    )
    meter = ThroughputMeter(args.warmup)
    trainer = pl.Trainer(max_steps=args.steps, max_epochs=-1, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, limit_val_batches=0, callbacks=[meter])
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    total_s = time.perf_counter() - start
    timed = meter.batches - args.warmup
    wall_s = (meter.wall_end - meter.wall_start) if timed > 0 else float("nan")
    cpu_s = (meter.cpu_end - meter.cpu_start) if timed > 0 else float("nan")
    return {
        "events_per_s": meter.events / wall_s if timed > 0 else float("nan"),
        "events_per_s_compute": meter.events / meter.step_s if timed > 0 else float("nan"),
        "events_per_cpu_s": meter.events / cpu_s if timed > 0 else float("nan"),
        "wall_s": wall_s, "cpu_s": cpu_s, "fit_s": total_s, "timed_steps": timed, "timed_events": meter.events,
        "final_loss": meter.last_loss,
    }


def _window_payload(z: torch.Tensor, ends: np.ndarray, starts: np.ndarray, max_len: int) -> PaddedBatch:
    """Right-padded windows z[max(start, end - max_len):end] for each (start, end) pair; payload (B, T, D)."""
    begins = np.maximum(starts, ends - max_len)
    lengths = ends - begins
    t = max(1, int(lengths.max()))
    idx = begins[:, None] + np.arange(t)[None, :]
    valid = np.arange(t)[None, :] < lengths[:, None]
    payload = z[torch.from_numpy(np.where(valid, idx, 0))] * torch.from_numpy(valid)[..., None]  # (B, T, D)
    return PaddedBatch(payload, torch.from_numpy(lengths))


def _length_batches(lengths: np.ndarray, token_budget: int) -> list[np.ndarray]:
    """Indices of the non-empty items sorted by length, cut into batches with (batch size x longest) <= budget."""
    order = np.argsort(lengths, kind="stable")
    order = order[lengths[order] > 0]
    sorted_lengths = lengths[order]
    batches, i = [], 0
    while i < len(order):  # one iteration per batch, not per item
        cap = max(1, token_budget // int(sorted_lengths[i]))
        # Ascending lengths: n items starting at i cost n * length of the n-th; the largest n that fits.
        window = sorted_lengths[i:i + cap]
        cost = np.arange(1, len(window) + 1) * window
        n = max(1, int(np.searchsorted(cost, token_budget, side="right")))
        batches.append(order[i:i + n])
        i += n
    return batches


def _rnn_states(core: torch.nn.Module, z: torch.Tensor, local: np.ndarray, token_budget: int) -> torch.Tensor:
    """GRU output after every event of a chunk, each entity run over its whole sequence; (n, H).

    Args:
        z: (n, D) event embeddings of the chunk; local: (E + 1,) entity offsets into z.
    """
    lengths = np.diff(local)
    state = torch.zeros(len(z), core.embedding_size)
    for group in _length_batches(lengths, token_budget):
        batch = _window_payload(z, local[group + 1], local[group], int(lengths[group].max()))
        h = core(batch).payload  # (B, T, H)
        valid = batch.seq_len_mask.bool()
        rows = torch.from_numpy(local[group][:, None] + np.arange(h.shape[1])[None, :])
        state[rows[valid]] = h[valid]
    return state


def _cls_embeddings(core: torch.nn.Module, z: torch.Tensor, ends: np.ndarray, starts: np.ndarray, max_len: int,
                    token_budget: int) -> torch.Tensor:
    """Transformer read-out (CLS) of each window z[max(start, end - max_len):end]; (K, H), zeros if empty."""
    lengths = ends - np.maximum(starts, ends - max_len)
    out = torch.zeros(len(ends), core.embedding_size)
    for idx in _length_batches(lengths, token_budget):
        out[torch.from_numpy(idx)] = core(_window_payload(z, ends[idx], starts[idx], max_len))
    return out


def _embedding_array(vectors: torch.Tensor) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.numpy().ravel()), vectors.shape[1])


def embed(seq_encoder: torch.nn.Module, kind: str, seqs: FlatSequences, features: dict[str, np.ndarray],
          pit_mask: np.ndarray | None, args: argparse.Namespace, out: Path) -> dict:
    """Write entity and point-in-time embeddings; returns their paths and the wall time.

    The event encoder (TrxEncoder) is per-event in eval mode (embedding lookups, fixed scalers, batch norm
    with running statistics), so it runs once over flat chunks. The GRU then runs over each entity's whole
    sequence: its output at event i is the state after events 0..i, so the state strictly before event i is
    the output at i - 1. The ptls transformer is bidirectional and reads out a CLS token, so each
    point-in-time embedding is its own forward pass over the (at most `max_len`) events before the event, as
    in training (cost ~ events x max_len); `--pit-stride K` reuses the window ending at the last multiple of K
    events instead (stale by up to K - 1 events, never ahead of the event).
    """
    seq_encoder.eval()
    # torch's fused inference path for nn.TransformerEncoder (nested tensors) ran ~10x slower than the plain
    # path on these CPUs (measured); same weights and outputs, training is unaffected.
    torch.backends.mha.set_fastpath_enabled(False)
    seq_encoder.is_reduce_sequence = kind == "transformer"
    trx, core = seq_encoder.trx_encoder, seq_encoder.seq_encoder
    tensors = {k: torch.from_numpy(v) for k, v in features.items()}
    lengths, offsets = seqs.lengths, seqs.offsets
    pit_path, ent_path = out / "pit_embeddings.parquet", out / "entity_embeddings.parquet"
    pit_schema = pa.schema([("entity_type", pa.string()), ("entity_id", pa.string()), ("event_id", pa.string()),
                            ("event_time", pa.timestamp("ms")), ("has_history", pa.int8()),
                            ("embedding", pa.list_(pa.float32(), seq_encoder.embedding_size))])
    writer = pq.ParquetWriter(pit_path, pit_schema) if pit_mask is not None else None
    entity_tables: list[pa.Table] = []
    start = time.perf_counter()
    # Contiguous entity chunks of about `embed_chunk_events` events keep memory flat for any data size.
    cuts = np.searchsorted(offsets, np.arange(0, offsets[-1], args.embed_chunk_events), side="left")
    bounds = np.unique(np.concatenate([np.clip(cuts, 0, len(lengths)), [len(lengths)]]))
    with torch.inference_mode(), tqdm(total=int(offsets[-1]), unit="ev", desc=f"embed {kind}", file=sys.stderr) as bar:
        for a, b in zip(bounds[:-1], bounds[1:]):
            lo, hi = int(offsets[a]), int(offsets[b])
            z = trx(PaddedBatch({k: v[None, lo:hi] for k, v in tensors.items()}, torch.tensor([hi - lo]))).payload[0]
            local = offsets[a:b + 1] - lo  # entity offsets inside the chunk
            first = np.repeat(local[:-1], lengths[a:b])  # (n,) chunk row of each event's entity start
            rows = np.arange(hi - lo)
            if kind == "rnn":
                state = _rnn_states(core, z, local, args.token_budget)  # (n, H) after each event
                last = torch.zeros(b - a, state.shape[1])
                has = lengths[a:b] > 0
                last[torch.from_numpy(has)] = state[torch.from_numpy(local[1:][has] - 1)]
            else:
                last = _cls_embeddings(core, z, local[1:], local[:-1], args.max_len, args.token_budget)
            if writer is not None:
                sel = rows[pit_mask[lo:hi]]
                # History strictly before event j of the chunk: rows [first, end) with end <= j.
                ends = first[sel] + (sel - first[sel]) // args.pit_stride * args.pit_stride
                if kind == "rnn":
                    shifted = torch.cat([torch.zeros(1, state.shape[1]), state])  # row r -> state after r - 1
                    vecs = shifted[torch.from_numpy(np.where(ends > first[sel], ends, 0))]
                else:
                    uniq, inverse = np.unique(ends, return_inverse=True)
                    owner_start = first[uniq]
                    vecs = _cls_embeddings(core, z, uniq, owner_start, args.max_len, args.token_budget)[inverse]
                has_history = ends > first[sel]
                vecs[torch.from_numpy(~has_history)] = 0.0
                owner = a + np.searchsorted(local, sel, side="right") - 1
                writer.write_table(pa.table({
                    "entity_type": pa.array([seqs.entity_type] * len(sel), pa.string()),
                    "entity_id": pa.array(seqs.entity_ids[owner], pa.string()),
                    "event_id": pa.array(seqs.event_ids[lo + sel], pa.string()),
                    "event_time": pa.array(seqs.event_time_ms[lo + sel], pa.timestamp("ms")),
                    "has_history": pa.array(has_history.astype(np.int8)),
                    "embedding": _embedding_array(vecs),
                }, schema=pit_schema))
            as_of = seqs.event_time_ms[np.maximum(offsets[a + 1:b + 1] - 1, 0)]
            entity_tables.append(pa.table({
                "entity_type": pa.array([seqs.entity_type] * (b - a), pa.string()),
                "entity_id": pa.array(seqs.entity_ids[a:b], pa.string()),
                "as_of": pa.array(np.where(lengths[a:b] > 0, as_of, 0), pa.timestamp("ms")),
                "n_events": pa.array(lengths[a:b], pa.int64()),
                "embedding": _embedding_array(last),
            }))
            bar.update(hi - lo)
    if writer is not None:
        writer.close()
    pq.write_table(pa.concat_tables(entity_tables), ent_path)
    return {"entity_embeddings": str(ent_path), "pit_embeddings": str(pit_path) if writer is not None else None,
            "embed_wall_s": time.perf_counter() - start,
            "pit_rows": int(pit_mask.sum()) if pit_mask is not None else 0}


def pit_selection(seqs: FlatSequences, args: argparse.Namespace) -> np.ndarray | None:
    """(N,) bool: the events that get a point-in-time embedding (all by default)."""
    if args.no_pit:
        return None
    mask = np.ones(seqs.num_events, dtype=bool)
    if args.pit_from:
        mask &= seqs.event_time_ms >= int(np.datetime64(args.pit_from, "ms").astype(np.int64))
    if args.pit_where:
        name, _, values = args.pit_where.partition("=")
        if name not in seqs.columns:
            raise KeyError(f"--pit-where: column {name!r} is not a categorical feature column ({sorted(seqs.columns)})")
        hit = pc.is_in(seqs.columns[name], value_set=pa.array(values.split(","), pa.string()))
        mask &= hit.fill_null(False).to_numpy(zero_copy_only=False)
    return mask


def _names(value: str | None) -> list[str] | None:
    return None if value is None else [v for v in value.split(",") if v]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="pytorch-lifestream CoLES on our sequence shards")
    p.add_argument("--seq-dir", required=True, help="training shards: <seq-dir>/<entity-type>/part-*.parquet")
    p.add_argument("--embed-seq-dir", help="shards to embed (default: --seq-dir)")
    p.add_argument("--entity-type", default="customer")
    p.add_argument("--out", required=True)
    p.add_argument("--encoder", choices=ENCODERS, required=True)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--steps", type=int, default=100, help="optimizer steps (0 with --init-from: embed only)")
    p.add_argument("--warmup", type=int, default=5, help="first batches left out of the throughput")
    p.add_argument("--batch-size", type=int, default=32, help="entities per batch (each gives --split-count views)")
    p.add_argument("--max-len", type=int, default=128, help="longest sub-sequence (and transformer window)")
    p.add_argument("--min-len", type=int, default=16, help="shortest sub-sequence; shorter entities are not trained on")
    p.add_argument("--split-count", type=int, default=2, help="CoLES views per entity (ptls examples use 5)")
    p.add_argument("--splitter", choices=("sample_slices", "split_random"), default="sample_slices")
    p.add_argument("--layers", type=int, default=4, help="transformer layers")
    p.add_argument("--heads", type=int, default=4, help="transformer heads")
    p.add_argument("--ffn", type=int, default=0, help="transformer feed-forward width (0 -> 4 x hidden)")
    p.add_argument("--rnn-layers", type=int, default=1, help="GRU layers (ptls CoLES uses 1)")
    p.add_argument("--emb-dim", type=int, default=16, help="embedding width of each categorical field")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--categorical", help="comma-separated categorical columns (default: every list<string>)")
    p.add_argument("--numeric", help="comma-separated numeric columns (default: every list<double> but --labels)")
    p.add_argument("--labels", help="comma-separated label columns, never features; required unless --numeric")
    p.add_argument("--exclude", default="", help="comma-separated columns to leave out (e.g. text fields)")
    p.add_argument("--min-count", type=int, default=1, help="rarer categorical values map to the OOV id")
    p.add_argument("--no-time-features", action="store_true", help="no hour/dow/time_gap inputs")
    p.add_argument("--init-from", help="a previous --out: load its model.pt and features.json")
    p.add_argument("--no-pit", action="store_true", help="skip point-in-time embeddings")
    p.add_argument("--pit-from", help="ISO time: point-in-time embeddings only for events at or after it")
    p.add_argument("--pit-where", help="FIELD=v1,v2: point-in-time embeddings only for events with these values")
    p.add_argument("--pit-stride", type=int, default=1, help="transformer: recompute every K events (1 = exact)")
    p.add_argument("--embed-chunk-events", type=int, default=200_000, help="events per embedding chunk (memory)")
    p.add_argument("--token-budget", type=int, default=32768, help="padded tokens per inference batch")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    pl.seed_everything(args.seed, verbose=False)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*enable_nested_tensor.*")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    if args.init_from:
        enc = FeatureEncoder.load(Path(args.init_from) / "features.json")
    else:
        labels = _names(args.labels)
        categorical, numeric = _names(args.categorical), _names(args.numeric)
        if categorical is None or numeric is None:
            if labels is None and numeric is None:
                raise SystemExit("--labels is required to infer numeric columns: labels are list<double> like "
                                 "numeric fields and would leak into the features (pass --labels '' if none)")
            schema = pq.read_schema(shard_paths(args.seq_dir, args.entity_type)[0])
            inferred_cat, inferred_num = infer_columns(schema, labels or [], _names(args.exclude) or [])
            categorical = inferred_cat if categorical is None else categorical
            numeric = inferred_num if numeric is None else numeric
        overlap = set(categorical + numeric) & set(labels or [])
        if overlap:
            raise SystemExit(f"columns {sorted(overlap)} are labels and cannot be features")
        enc = None
    categorical, numeric = (enc.categorical, enc.numeric) if enc else (categorical, numeric)
    print(f"fields: categorical {categorical}, numeric {numeric}", file=sys.stderr)

    train_seqs = read_sequences(args.seq_dir, categorical, numeric, args.entity_type)
    if enc is None:
        enc = FeatureEncoder.fit(train_seqs, categorical, numeric, args.min_count, not args.no_time_features)
    enc.save(out / "features.json")
    seq_encoder = build_encoder(args.encoder, enc, args)
    if args.init_from:
        seq_encoder.load_state_dict(torch.load(Path(args.init_from) / "model.pt", weights_only=True))
    params = sum(p.numel() for p in seq_encoder.parameters())

    result = {"encoder": args.encoder, "hidden": args.hidden, "steps": args.steps, "params": params,
              "batch_size": args.batch_size, "max_len": args.max_len, "split_count": args.split_count,
              "splitter": args.splitter, "layers": args.layers if args.encoder == "transformer" else args.rnn_layers,
              "threads": torch.get_num_threads(), "entities": len(train_seqs.entity_ids),
              "events": train_seqs.num_events, "categorical": categorical, "numeric": numeric,
              "time_features": enc.use_time_features, "ptls_version": _ptls_version(),
              "torch_version": torch.__version__, "seq_dir": os.fspath(args.seq_dir)}
    if args.steps > 0:
        if args.warmup >= args.steps:
            raise SystemExit(f"--warmup {args.warmup} must be below --steps {args.steps}")
        features = enc.transform(train_seqs)
        trainable = np.flatnonzero(train_seqs.lengths >= args.min_len)
        dataset = FlatFeatureDicts(features, (train_seqs.event_time_ms / 1000.0), train_seqs.offsets, trainable)
        result.update(train(seq_encoder, dataset, args), train_entities=len(trainable))
        torch.save(seq_encoder.state_dict(), out / "model.pt")
    else:
        result.update(events_per_s=None, wall_s=None)

    embed_seqs = train_seqs if not args.embed_seq_dir else read_sequences(args.embed_seq_dir, categorical, numeric,
                                                                          args.entity_type)
    result["embed_seq_dir"] = os.fspath(args.embed_seq_dir or args.seq_dir)
    result.update(embed(seq_encoder, args.encoder, embed_seqs, enc.transform(embed_seqs),
                        pit_selection(embed_seqs, args), args, out))
    result["model"] = str(out / "model.pt") if args.steps > 0 else None
    (out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("encoder", "hidden", "events_per_s", "steps", "params", "wall_s")}))
    return result


def _ptls_version() -> str:
    from importlib.metadata import version

    return version("pytorch-lifestream")


if __name__ == "__main__":
    main()
