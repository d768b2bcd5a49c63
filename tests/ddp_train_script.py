"""Run by tests/test_train.py under `torchrun --nproc_per_node 2`: a few DDP training steps of a tiny model on CPU.

Usage: torchrun --nproc_per_node 2 tests/ddp_train_script.py BACKBONE_DIR OUTPUT_DIR
Every process writes OUTPUT_DIR/batches_rank{r}.json: the subset ids of each batch it trained on, and its final s0.
"""

import json
import sys
from pathlib import Path

from cactus import Cactus
from cactus.data.benchmarks import build_family
from cactus.train import Trainer, TrainingConfig

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


class RecordingTrainer(Trainer):
    """A Trainer that remembers which subsets each of its steps used."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list[list[str]] = []

    def step(self, subsets):
        self.seen.append([s.id for s in subsets])
        return super().step(subsets)


def main() -> None:
    backbone, out = sys.argv[1], Path(sys.argv[2])
    data = build_family("clinc_intent", DATA, n_train=16, n_val=6, n_test=0)
    model = Cactus(backbone=backbone, attention="sia", device="cpu")
    config = TrainingConfig(lr=1e-3, batch_size=2, grad_accumulation=2, epochs=2, eval_every=2, log_every=1,
                            progress=False)  # the all-reduce waits for the last part
    trainer = RecordingTrainer(model, config, out)
    summary = trainer.train(data["train"], data["val"])
    rank = trainer.accelerator.process_index
    record = {"world": trainer.accelerator.num_processes, "batches": trainer.seen, "neutral": trainer.neutral,
              "steps": summary["steps"]}
    (out / f"batches_rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main()
