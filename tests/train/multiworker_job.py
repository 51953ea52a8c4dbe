"""One worker of the 2-worker test: trains an MLP with edgekeras.train.fit under TF_CONFIG, saves its weights.

    python multiworker_job.py OUT_DIR   (TF_CONFIG set by the test)
"""

import json
import os
import sys
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import numpy as np  # noqa: E402

from edgekeras import train  # noqa: E402

out = Path(sys.argv[1])
index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
rng = np.random.default_rng(0)
X = rng.normal(size=(512, 8)).astype(np.float32)
y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
result = train.fit("mlp", (X, y), epochs=3, batch_size=64, validation=0.25, seed=0, early_stopping=None,
                   out=out / "mlp.h5")
np.savez(out / f"weights_{index}.npz", *result.model.get_weights())
print(json.dumps({"worker": index, "device": result.device, "checkpoint": str(result.checkpoint),
                  "epochs": result.epochs_run}))
