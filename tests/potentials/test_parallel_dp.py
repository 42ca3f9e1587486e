"""dp compress and dp test as concurrent dp_batch processes (``compress_and_test``, the
Potential stage with several workers) give what the sequential path gives, and a job
that fails in one of the processes is named in a one-line error.

Real dp runs on the session's ``tiny_potential`` (2 tiny se_e2_a models)."""

from __future__ import annotations

import hashlib
import shutil

import pytest
from scalebridge.errors import ExternalProgramError
from scalebridge.potentials.dataset import load_dataset
from scalebridge.potentials.evaluate import score, score_job
from scalebridge.potentials.train import compress_and_test, run_dp
from scalebridge.workflows.engine import LocalMapper


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _work(src, dst):
    """A Potential's layout (models/, train/model_i/input.json) for compress and test."""
    (dst / "models").mkdir(parents=True)
    for i in range(2):
        shutil.copy(src / "models" / f"model_{i}.pth", dst / "models")
        (dst / "train" / f"model_{i}").mkdir(parents=True)
        shutil.copy(src / "train" / f"model_{i}" / "input.json", dst / "train" / f"model_{i}")
    return dst


def _cjobs(work):
    return [(["compress", "-i", str(work / "models" / f"model_{i}.pth"), "-o",
              str(work / "models" / f"model_{i}_compressed.pth"), "-t",
              str(work / "train" / f"model_{i}" / "input.json")], work / "train" / f"model_{i}")
            for i in range(2)]


@pytest.mark.slow
def test_parallel_compress_and_test_equal_the_sequential_path(tmp_path, tiny_potential,
                                                             tiny_dataset):
    ds = load_dataset(tiny_dataset)
    seq = _work(tiny_potential.path, tmp_path / "seq")
    run_dp(_cjobs(seq), seq, log_file=seq / "compress.log")
    want = score(seq / "models" / "model_0.pth", ds, "test", seq / "dp_test")
    pool2, pool3 = LocalMapper(workers=2), LocalMapper(workers=3)
    try:
        for pool, name in ((pool2, "two"), (pool3, "three")):
            par = _work(tiny_potential.path, tmp_path / name)
            model = par / "models" / "model_0.pth"
            err, tested = compress_and_test(_cjobs(par), score_job(model, ds, "test",
                                                                   par / "dp_test"),
                                            par, 1, pool)
            assert err is None and tested
            got = score(model, ds, "test", par / "dp_test", ran=True)
            assert got["overall"] == want["overall"] and got["groups"] == want["groups"]
            for kind in ("e", "f", "v"):  # dp test's own files, number for number
                f = f"dp_test/dp_test.{kind}.out"
                assert (par / f).read_text() == (seq / f).read_text(), (name, f)
            for i in range(2):
                m = f"models/model_{i}_compressed.pth"
                assert _sha(par / m) == _sha(seq / m), (name, m)
            # three workers: each model compressed in its own process, logs merged in order
            clog = (par / "compress.log").read_text()
            assert clog.index("model_0.pth") < clog.index("model_1.pth")
            assert clog.count("dp_batch: done: dp --pt compress") == 2
            assert not list(par.glob("train/model_*/compress.log"))
            assert "output of dp test" in (par / "dp_test" / "dp_test.log").read_text()
    finally:
        pool2.close()
        pool3.close()


@pytest.mark.slow
def test_a_failed_job_in_a_parallel_process_is_named(tmp_path, tiny_potential, tiny_dataset):
    ds = load_dataset(tiny_dataset)
    par = _work(tiny_potential.path, tmp_path / "fail")
    cjobs = _cjobs(par)
    missing = par / "models" / "model_9.pth"
    cjobs[1][0][2] = str(missing)           # compress a model that is not there
    test = score_job(missing, ds, "test", par / "dp_test")  # and test it
    pool = LocalMapper(workers=3)
    try:
        with pytest.raises(ExternalProgramError) as exc:
            compress_and_test(cjobs, test, par, 1, pool)
        msg = str(exc.value)
        assert "\n" not in msg
        assert f"dp --pt test -m {missing}" in msg and f"(in {par / 'dp_test'})" in msg
        assert "dp_test.log" in msg
        # without the test: the compression's error comes back, naming its job (the other
        # chunk's model made again by this call, not left from the first)
        (par / "models" / "model_0_compressed.pth").unlink()
        err, tested = compress_and_test(cjobs, None, par, 1, pool)
    finally:
        pool.close()
    assert not tested and err is not None and "\n" not in err
    assert f"dp --pt compress -i {missing}" in err and f"(in {par / 'train/model_1'})" in err
    # the chunk's own log was merged into compress.log and removed: the error names that
    assert str(par / "compress.log") in err and "train/model_1/compress.log" not in err
    assert (par / "models" / "model_0_compressed.pth").is_file()  # the other process's job
