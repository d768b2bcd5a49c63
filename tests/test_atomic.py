"""Atomic writes: a failed or killed write leaves the previous file or folder whole, and its temporaries go with
the next write.

The kill test SIGKILLs processes at random moments while they predict and write, tune a threshold and save the
model, and train with a checkpoint every step. The processes are forked from this one, which has torch and the tiny
model loaded already, so that each of the runs costs a fraction of a second to start.
"""

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cactus import Cactus
from cactus.atomic import atomic_dir, atomic_write, recover_dir, replace_dir, write_text
from cactus.data import Subset, read_subsets, write_subsets
from conftest import EXAMPLES


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "report.json"
    write_text(target, "old\n")

    def fail(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_text() == "old\n" and hidden(tmp_path) == []


def test_temporaries_of_dead_processes_are_removed_by_the_next_write(tmp_path):
    target = tmp_path / "p.jsonl"
    dead, alive = dead_pid(), os.getppid()
    (tmp_path / f".p.jsonl.{dead}-0123abcd.tmp").write_text("killed while writing")
    (tmp_path / f".best.{dead}-89abcdef.tmp").mkdir()  # another target of the same folder, a killed model save
    (tmp_path / f".p.jsonl.{alive}-0123abcd.tmp").write_text("another run, still writing")
    (tmp_path / ".p.jsonl.tmp").write_text("the fixed name an earlier version used")
    (tmp_path / ".p.jsonl.ab12cd34").mkdir()
    (tmp_path / ".p.jsonl.ab12cd34" / "cactus_config.json").write_text("{}")  # an earlier version's model save
    (tmp_path / ".p.jsonl.settings").mkdir()  # not ours: other content
    (tmp_path / ".p.jsonl.settings" / "mine.txt").write_text("keep")
    write_subsets(target, [Subset("a", ["x"])])
    assert hidden(tmp_path) == [f".p.jsonl.{alive}-0123abcd.tmp", ".p.jsonl.settings"]


def test_two_writers_of_one_target_do_not_collide(tmp_path):
    """A write that starts while another is under way (as a second run would) uses its own temporary."""
    target = tmp_path / "out.jsonl"
    seen = []

    def outer(tmp):
        seen.append(tmp.name)
        tmp.write_text("outer\n")
        atomic_write(target, lambda inner: (seen.append(inner.name), inner.write_text("inner\n")))
        assert tmp.read_text() == "outer\n"  # untouched by the other write

    atomic_write(target, outer)
    assert len(set(seen)) == 2 and all(str(os.getpid()) in name for name in seen)
    assert target.read_text() == "outer\n" and hidden(tmp_path) == []


def test_folder_replacement_and_recovery(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "a.txt").write_text("2")
            raise RuntimeError("killed")
    assert (target / "a.txt").read_text() == "1" and hidden(tmp_path) == []
    # killed between the two renames of replace_dir: the old folder is set aside, the new one not yet in place
    target.rename(tmp_path / ".model.old")
    recover_dir(target)
    assert (target / "a.txt").read_text() == "1"
    new = tmp_path / "new"
    new.mkdir()
    (new / "a.txt").write_text("3")
    replace_dir(new, target)
    assert (target / "a.txt").read_text() == "3" and hidden(tmp_path) == [] and not new.exists()


# ---- the kill test -------------------------------------------------------------------------------------------------
def many(examples, copies: int) -> list[Subset]:
    return [Subset(f"{s.id}-{k}", s.texts, s.labels, extra={"copy": k}) for k in range(copies) for s in examples]


THRESHOLDS = [round(0.1 * i, 1) for i in range(10)]


def in_forked_child() -> None:
    """A forked child must not use the parent's thread pool, nor tqdm's locks: tqdm's write lock holds a
    multiprocessing lock shared across the fork, and a child killed while holding it would leave this process
    waiting for it forever. Every tqdm class (transformers' and ours are subclasses) gets a lock of the child's own."""
    import threading

    from tqdm.std import tqdm

    torch.set_num_threads(1)
    classes = [tqdm]
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        cls._lock = threading.RLock()


def predict_loop(model, subsets, target, done):
    in_forked_child()
    for i in range(10**9):
        t = THRESHOLDS[i % len(THRESHOLDS)]
        preds = model.predict(subsets, threshold=t)
        write_subsets(target, [s.with_clusters(p.tolist()) for s, p in zip(subsets, preds)])
        done.value += 1


def tune_loop(model, subsets, target, done):
    in_forked_child()
    for i in range(10**9):
        model.config.objective = ["ami+ari", "nmi", "f1"][i % 3]
        model.tune_threshold(subsets)
        model.save_pretrained(target)
        done.value += 1


def train_loop(backbone, subsets, run, done):
    from cactus.train import TrainingConfig

    in_forked_child()
    config = TrainingConfig(max_steps=10**6, epochs=10**6, batch_size=2, checkpoint_every=1, lr=1e-3,
                            progress=False)
    Cactus(backbone=backbone, attention="sia", device="cpu").fit(subsets, subsets, config=config, output_dir=run)


def kill_at_random(target_fn, args, done, started, seconds: float, rng) -> None:
    """Start `target_fn(*args)` in a forked process, wait until `started()`, let it run a random time up to
    `seconds`, and SIGKILL it."""
    proc = multiprocessing.get_context("fork").Process(target=target_fn, args=args, daemon=True)
    proc.start()
    deadline = time.monotonic() + 120
    while not started() and time.monotonic() < deadline and proc.is_alive():
        time.sleep(0.01)
    assert started(), "the process never finished a first write"
    time.sleep(rng.uniform(0.0, seconds))
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()  # reaped: its temporaries now belong to a dead process


def test_killed_at_random_the_previous_output_stays_whole(tmp_path, tiny_backbone):
    rng = np.random.default_rng(0)
    examples = read_subsets(EXAMPLES)
    model = Cactus(backbone=tiny_backbone, device="cpu")
    subsets = many(examples, 40)
    expected = {t: [p.tolist() for p in model.predict(subsets, threshold=t)] for t in THRESHOLDS}
    done = multiprocessing.get_context("fork").Value("i", 0, lock=False)  # no lock a killed child could hold
    runs = mid_write = 0

    for k in range(9):  # predict: the output file is always one whole earlier output
        target = tmp_path / "pred" / f"out.{['jsonl', 'csv', 'parquet'][k % 3]}"
        done.value = 0
        kill_at_random(predict_loop, (model, subsets, target, done), done, lambda: done.value > 0, 1.0, rng)
        mid_write += bool(hidden(target.parent))
        back = read_subsets(target)
        assert [s.id for s in back] == [s.id for s in subsets]
        assert [[int(c) for c in s.cluster_ids] for s in back] in expected.values()
        write_subsets(target, back)  # the next run
        assert hidden(target.parent) == []
        runs += 1

    target = tmp_path / "tuned" / "model"
    for _ in range(7):  # tune-threshold --save-to: the model folder always loads, whole
        done.value = 0
        kill_at_random(tune_loop, (model, examples, target, done), done, lambda: done.value > 0, 1.0, rng)
        mid_write += bool(hidden(target.parent))
        loaded = Cactus.from_pretrained(target, device="cpu")
        assert loaded.threshold_ is not None and len(loaded.predict(examples[:1])[0]) == len(examples[0])
        loaded.save_pretrained(target)  # the next run
        assert hidden(target.parent) == []
        runs += 1

    run = tmp_path / "train"
    checkpoint = run / "checkpoint"
    for _ in range(6):  # training: the checkpoint always resumes, and the best model always loads
        start = time.time()
        kill_at_random(train_loop, (tiny_backbone, examples, run, done), done, lambda: newer(checkpoint, start),
                       1.5, rng)
        mid_write += bool(hidden(run))
        recover_dir(checkpoint)
        step = json_step(checkpoint)
        from cactus.train import TrainingConfig

        resumed = Cactus(backbone=tiny_backbone, attention="sia", device="cpu")
        resumed.fit(examples, examples, output_dir=run, resume=True,
                    config=TrainingConfig(max_steps=step + 1, epochs=10**6, batch_size=2, checkpoint_every=1,
                                          lr=1e-3, progress=False))
        assert json_step(checkpoint) == step + 1
        if (run / "best").exists() or (run / ".best.old").exists():
            Cactus.from_pretrained(run / "best", device="cpu").predict(examples[:1])
        assert hidden(run) == []
        runs += 1
    print(f"{runs} runs killed, {mid_write} of them while writing")
    assert runs >= 20 and mid_write > 0


def newer(checkpoint: Path, start: float) -> bool:
    """Whether the checkpoint was written after `start` (it may be set aside for a moment while replaced)."""
    try:
        return (checkpoint / "trainer_state.json").stat().st_mtime > start
    except OSError:
        return False


def json_step(checkpoint: Path) -> int:
    import json

    return json.loads((checkpoint / "trainer_state.json").read_text())["step"]
