"""Training across machines: two worker processes on 127.0.0.1, MultiWorkerMirroredStrategy via TF_CONFIG."""

from __future__ import annotations

import pytest

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

JOB = Path(__file__).with_name("multiworker_job.py")


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow  # moved from the default run (issue 17's test pyramid): CI runs it with -m slow
def test_two_workers_train_to_identical_weights(tmp_path):
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs = []
    for i in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}
        env = dict(os.environ, TF_CONFIG=json.dumps(config),
                   CUDA_VISIBLE_DEVICES="-1")
        procs.append(subprocess.Popen([sys.executable, str(JOB), str(tmp_path)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outputs = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        assert p.returncode == 0, err[-3000:]
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    assert all("MultiWorkerMirroredStrategy" in o["device"] and "of 2 replicas" in o["device"] for o in outputs)
    assert all(o["epochs"] == 3 for o in outputs)
    # worker 0 is the chief: it alone writes the model and its card
    assert outputs[0]["checkpoint"].endswith("mlp.h5") and outputs[1]["checkpoint"] == "None"
    assert (tmp_path / "mlp.h5").is_file() and (tmp_path / "mlp.h5.edgekeras.json").is_file()
    w0, w1 = np.load(tmp_path / "weights_0.npz"), np.load(tmp_path / "weights_1.npz")
    assert len(w0.files) == len(w1.files) > 0
    for k in w0.files:
        np.testing.assert_array_equal(w0[k], w1[k])
