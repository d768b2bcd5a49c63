"""Batch prediction on a Ray cluster with Ray Data (`cactus predict --engine ray`; `pip install -e ".[ray]"`).

`predict_dataset` reads a JSONL file of subsets (`.jsonl.gz` too) as lines, parses and validates each line with
the same code as `cactus predict` (`cactus.data.io`), clusters batches of subsets with `map_batches` on a pool of
actors that each hold one model (loaded once per actor, with `num_gpus` each where there are GPUs), and writes a
folder of Parquet files, one entity per row: `subset_id`, `entity_index`, `text`, `label` (when the input has labels)
and `cluster_id`. Ids and labels are written as text, so that every block has one schema. Order is preserved:
read in file order, the rows are the input's subsets and entities in order.

With no `address`, Ray starts a local cluster on this machine; `address="ray://head:10001"` (or "auto" on a node of
a running cluster) submits the same job to a cluster, where the model's folder and the input must be reachable at
the same paths from every node (a shared file system, or object storage with a URI Ray reads).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from cactus.cluster import Cut
from cactus.data.io import subset_of_line
from cactus.data.subsets import SubsetFormatError

if TYPE_CHECKING:
    from cactus.model import Cactus

OUTPUT_COLUMNS = ("subset_id", "entity_index", "text", "label", "cluster_id")


class SubsetPredictor:
    """A Ray Data actor: one model, loaded when the actor starts; `__call__` answers one batch of JSONL lines."""

    def __init__(self, model: "Cactus", threshold: float | None, cut: dict, source: str):
        model.encoder  # load the weights once per actor, before the first batch
        self.model, self.threshold, self.cut, self.source = model, threshold, Cut.from_dict(cut), source

    def __call__(self, batch: dict) -> dict:
        lines = [line for line in batch["text"] if line.strip()]
        subsets = [subset_of_line(line, self.source, None) for line in lines]
        predictions = self.model.predict(subsets, threshold=self.threshold, cut=self.cut)
        out: dict[str, list] = {name: [] for name in OUTPUT_COLUMNS}
        for s, ids in zip(subsets, predictions):
            for i, (text, cluster) in enumerate(zip(s.texts, ids)):
                out["subset_id"].append(str(s.id))
                out["entity_index"].append(i)
                out["text"].append(text)
                out["label"].append(None if s.labels is None else str(s.labels[i]))
                out["cluster_id"].append(int(cluster))
        return out


def predict_dataset(model: "Cactus", input: str | os.PathLike, output: str | os.PathLike, *,
                    threshold: float | None = None, cut: Cut | None = None, actors: int = 1,
                    num_gpus: float = 0, batch_subsets: int = 256, address: str | None = None) -> int:
    """Cluster every subset of the JSONL file `input` on Ray into the Parquet folder `output` (replaced if there);
    return the number of entity rows written. `actors` models run at once (each with `num_gpus`); each call of one
    answers `batch_subsets` subsets. `threshold` and `cut` as in `Cactus.predict`."""
    import ray

    cut, threshold = model.resolve_cut(threshold, cut)
    source = str(input)
    if not Path(source).exists() and "://" not in source:
        raise FileNotFoundError(f"{source}: no such file")
    if not ray.is_initialized():
        # A local cluster counts one logical CPU per actor and one more for the reading and writing tasks, which
        # wait on I/O: with only the machine's cores, actors holding them all would leave the reader unscheduled.
        local = {"num_cpus": actors + 1} if address is None else {}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                 **local)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    io = {"num_cpus": 0.1}  # reading and writing: a small share of the CPU left to them
    lines = ray.data.read_text(source, ray_remote_args=io)
    answered = lines.map_batches(SubsetPredictor, batch_size=batch_subsets, num_cpus=1, num_gpus=num_gpus,
                                 compute=ray.data.ActorPoolStrategy(size=actors),
                                 fn_constructor_kwargs={"model": model, "threshold": threshold,
                                                        "cut": cut.to_dict(), "source": source})
    try:
        answered.write_parquet(str(output), mode="overwrite", ray_remote_args=io)
    except Exception as e:  # Ray wraps a worker's error; its message names the subset
        cause = _user_error(e)
        if cause is not None:
            raise cause from None
        raise
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in Path(output).glob("*.parquet"))


def _user_error(error: BaseException) -> SubsetFormatError | None:
    """The SubsetFormatError a worker raised, out of Ray's wrappers."""
    seen = error
    while seen is not None:
        if isinstance(seen, SubsetFormatError):
            return seen
        seen = getattr(seen, "cause", None) or seen.__cause__
    return None
