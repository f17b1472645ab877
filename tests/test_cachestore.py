"""The chunked record store behind the decoded and feature caches, and the training and health paths reading it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from imgcls.store import workspace
from imgcls.vision import cachestore, imgcache

pytestmark = pytest.mark.usefixtures("imgcls_home")
ROOT = Path(__file__).resolve().parents[1]


def _record(digest: str, shape=(4, 4, 3)) -> np.ndarray:
    """A record that can only be the one of this hash."""
    seed = int.from_bytes(digest.encode()[-4:].rjust(4, b"\0"), "little")
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def small_shards(monkeypatch):
    monkeypatch.setenv("IMGCLS_SHARD_RECORDS", "5")  # records cross shard files in every test
    monkeypatch.setenv("IMGCLS_READ_CHUNK", "7")


def test_records_come_back_as_written_across_shards_and_after_a_reopen(small_shards):
    store = cachestore.open_store("decoded", "t")
    digests = [f"h{i}" for i in range(23)]
    store.append(digests[:11], np.stack([_record(d) for d in digests[:11]]))
    store.append(digests[5:], np.stack([_record(d) for d in digests[5:]]))  # 6 already there: skipped
    again = cachestore.open_store("decoded", "t")
    order = np.random.default_rng(0).permutation(23)
    got = again.read(again.lookup([digests[i] for i in order]))
    assert np.array_equal(got, np.stack([_record(digests[i]) for i in order]))
    assert len((store.root / cachestore.INDEX).read_bytes().splitlines()) == 23
    assert len(list(store.root.glob("shard-*.bin"))) == 5
    assert list(again.lookup(["nope", "h3"])) == [-1, again.slots["h3"]]
    with pytest.raises(ValueError, match="do not fit"):
        again.append(["other"], np.zeros((1, 2, 2, 3), np.uint8))


_WRITER = textwrap.dedent("""
    import sys, numpy as np
    sys.path[:0] = [{root!r}, {tests!r}]
    from test_cachestore import _record
    from imgcls.vision import cachestore
    store = cachestore.open_store("decoded", "t")
    names = sys.argv[1:]
    for start in range(0, 10**9 if names == ["forever"] else len(names), 3):
        batch = [f"k{{i}}" for i in range(start, start + 3)] if names == ["forever"] else names[start:start + 3]
        store.append(batch, np.stack([_record(d, (64, 64, 3)) for d in batch]))
        if names == ["forever"]:
            print(start + 3, flush=True)
""")


def _writer(args: list[str], **kw) -> subprocess.Popen:
    code = _WRITER.format(root=str(ROOT), tests=str(ROOT / "tests"))
    return subprocess.Popen([sys.executable, "-c", code, *args], env=os.environ.copy(), **kw)


def test_a_view_sent_to_a_loader_worker_reads_the_same_records_without_the_whole_index():
    import pickle

    store = cachestore.open_store("decoded", "w")
    digests = [f"digest-{i:06d}" for i in range(5000)]
    store.append(digests, np.stack([_record(d, (2, 2, 3)) for d in digests]))
    view = cachestore.RecordView(store, store.lookup(digests[::-7]))
    sent = pickle.dumps(view)  # what a DataLoader worker process receives
    assert len(sent) < 70_000  # the slots asked for (8 bytes each), not 5,000 hashes and their slots
    landed = pickle.loads(sent)
    assert np.array_equal(np.asarray(landed), np.asarray(view))
    assert list(landed.store.lookup(["digest-000003", "nothing"])) == [3, -1]  # the index is read when asked


def test_writers_in_several_processes_store_each_record_once(small_shards):
    names = [f"d{i}" for i in range(40)]
    procs = [_writer(names[i * 10:i * 10 + 25]) for i in range(3)]  # overlapping sets
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    store = cachestore.open_store("decoded", "t")
    lines = (store.root / cachestore.INDEX).read_bytes().splitlines()
    assert len(lines) == len(set(names)) == len(store.slots)
    assert sorted(store.slots.values()) == list(range(40))
    assert np.array_equal(store.read(store.lookup(names)), np.stack([_record(d, (64, 64, 3)) for d in names]))


def test_a_writer_killed_mid_write_leaves_a_store_the_next_writer_repairs(small_shards):
    proc = _writer(["forever"], stdout=subprocess.PIPE, text=True)
    for _ in range(4):  # let it write some batches, then kill it wherever it is
        assert proc.stdout.readline()
    time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    store = cachestore.open_store("decoded", "t")
    assert len(store.slots) >= 12
    have = sorted(store.slots, key=store.slots.get)
    assert np.array_equal(store.read(store.lookup(have)), np.stack([_record(d, (64, 64, 3)) for d in have]))
    # a kill can cut the last index line short and leave record bytes no line names: both are overwritten
    with open(store.root / cachestore.INDEX, "ab") as fh:
        fh.write(b"torn\t99")
    last = store.root / f"shard-{len(store.slots) // 5:05d}.bin"
    with open(last, "ab") as fh:
        fh.write(b"\x01" * 64 * 64 * 3 * 2)
    reader = cachestore.open_store("decoded", "t")
    assert set(reader.slots) == set(have)  # a reader skips the torn line
    reader.append(["new1", "new2"], np.stack([_record(d, (64, 64, 3)) for d in ("new1", "new2")]))
    fresh = cachestore.open_store("decoded", "t")
    assert set(fresh.slots) == set(have) | {"new1", "new2"}
    assert b"torn" not in (store.root / cachestore.INDEX).read_bytes()
    names = have + ["new1", "new2"]
    assert np.array_equal(fresh.read(fresh.lookup(names)), np.stack([_record(d, (64, 64, 3)) for d in names]))


def _pictures(folder: Path, n: int) -> tuple[list[str], list[str]]:
    from PIL import Image

    paths, hashes = [], []
    for i in range(n):
        arr = np.random.default_rng(i).integers(0, 256, (30 + i, 40, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"p{i}.png")
        paths.append(f"p{i}.png")
        hashes.append(f"hash{i}")
    return paths, hashes


def test_the_decoded_view_reads_like_the_array_a_direct_decode_makes(small_shards, tmp_path):
    from imgcls.ingest.images import load_rgb

    paths, hashes = _pictures(tmp_path, 13)
    direct = np.stack([imgcache.fit_square(load_rgb(tmp_path / p), 24) for p in paths])
    # an old per-file cache entry is copied in rather than decoded again
    legacy = workspace.cache_dir("decoded") / "24-bicubic"
    legacy.mkdir(parents=True)
    np.save(legacy / "hash3.npy", np.full((24, 24, 3), 7, np.uint8))
    view = imgcache.load_images(tmp_path, paths, hashes, 24)
    direct[3] = 7
    assert not (legacy / "hash3.npy").exists()  # moved into the store, not kept twice
    assert len(view) == 13 and view.shape == (13, 24, 24, 3) and view.dtype == np.uint8
    assert np.array_equal(np.asarray(view), direct)
    assert np.array_equal(view[4], direct[4]) and np.array_equal(view[-1], direct[-1])
    idx, mask = np.array([12, 0, 5, 5]), np.arange(13) % 3 == 0
    assert np.array_equal(view[idx], direct[idx]) and np.array_equal(view[mask], direct[mask])
    assert np.array_equal(view[2:9], direct[2:9]) and np.array_equal(view[:, :, ::-1], direct[:, :, ::-1])
    sub = view.subset(mask)
    assert np.array_equal(np.stack(list(sub)), direct[mask]) and sub.shape == (5, 24, 24, 3)
    (tmp_path / "p0.png").unlink()  # read from the store now: the file is not needed again
    assert np.array_equal(np.asarray(imgcache.load_images(tmp_path, paths, hashes, 24)), direct)
    assert imgcache.load_images(tmp_path, [], [], 24).shape == (0, 24, 24, 3)


def test_random_reads_from_the_store_beat_one_file_per_record():
    """Measured, not assumed: 2,000 random features of 20,000, against the per-file npy cache it replaces."""
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((20_000, 1280), dtype=np.float32)
    digests = [f"f{i}" for i in range(len(feats))]
    store = cachestore.open_store("features", "bench")
    for s in range(0, len(feats), 4096):
        store.append(digests[s:s + 4096], feats[s:s + 4096])
    old = workspace.cache_dir("features") / "old"
    old.mkdir()
    pick = rng.choice(len(feats), 2000, replace=False)
    for i in pick:
        np.save(old / f"{digests[i]}.npy", feats[i])
    t0 = time.perf_counter()
    fresh = cachestore.open_store("features", "bench")
    got = fresh.read(fresh.lookup([digests[i] for i in pick]))
    t1 = time.perf_counter()
    files = np.stack([np.load(old / f"{digests[i]}.npy") for i in pick])
    t2 = time.perf_counter()
    assert np.array_equal(got, feats[pick]) and np.array_equal(files, got)
    assert t1 - t0 < t2 - t1, f"store {t1 - t0:.3f} s, per-file {t2 - t1:.3f} s"


def _colours(name: str = "toy") -> str:
    from test_train import make_dataset

    return make_dataset(name, per_class=9, classes=(("red", (220, 40, 40)), ("blue", (40, 40, 220)),
                                                    ("green", (40, 200, 40))), spread=90)


def _finetune(run_arrays: bool, monkeypatch) -> dict:
    from imgcls.train.run import TrainConfig, prepare_run, run

    if run_arrays:  # the in-memory path: one array of every image, decoded straight from the files
        from imgcls.ingest.images import load_rgb

        def in_memory(folder, paths, hashes, side, interpolation="bicubic", progress=None):
            return np.stack([imgcache.fit_square(load_rgb(folder / p), side, interpolation) for p in paths])
        monkeypatch.setattr(imgcache, "load_images", in_memory)
    _colours()
    run_id = prepare_run(TrainConfig(dataset="toy", strategy="finetune", epochs=1, head_epochs=2, img_size=64,
                                     batch_size=8, seed=0))
    return run(run_id, echo=lambda _: None)


def test_a_run_reading_the_store_in_small_chunks_trains_as_the_in_memory_run(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGCLS_HOME", str(tmp_path / "arrays"))
    with monkeypatch.context() as patch:
        reference = _finetune(True, patch)
    monkeypatch.setenv("IMGCLS_HOME", str(tmp_path / "store"))
    monkeypatch.setenv("IMGCLS_READ_CHUNK", "7")
    monkeypatch.setenv("IMGCLS_SHARD_RECORDS", "5")
    streamed = _finetune(False, monkeypatch)
    assert streamed["epochs"] == reference["epochs"] == 1
    assert streamed["val_accuracy"] == reference["val_accuracy"]
    assert streamed["val_loss"] == pytest.approx(reference["val_loss"], abs=1e-5)
    assert len(list((tmp_path / "store" / "cache" / "decoded").rglob("shard-*.bin"))) >= 5


def test_a_health_check_reading_in_small_chunks_embeds_as_a_direct_decode(small_shards):
    from imgcls.health import check as health, scan
    from imgcls.ingest.images import load_rgb
    from imgcls.vision.features import embed
    from imgcls.vision.models import frozen_backbone

    _colours()
    health.check("toy")  # the check itself fills the decoded and feature stores
    df = workspace.read_manifest("toy")
    emb = scan.embeddings("toy")  # read back from the feature store
    pre = scan.preprocess()
    folder = workspace.dataset_dir("toy")
    x = np.stack([pre.prepare(load_rgb(folder / p)) for p in df["path"]])
    with torch.no_grad():
        direct = embed(frozen_backbone(pre.backbone), imgcache.to_tensor(x, pre.mean, pre.std)).numpy()
    assert emb.shape == direct.shape
    assert np.allclose(emb, direct, atol=1e-4)
