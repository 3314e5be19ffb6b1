#!/usr/bin/env python3
"""A Python job that reports to a flowcast run: log lines and progress, no package to install.

flowcast starts it from a task (see main.ts) with the run and the step in its environment:

    RUN_ID=<run id> STEP=<step> REDIS_URL=redis://127.0.0.1:6379 FLOWCAST_PREFIX=flowcast: python3 train.py

Every line it writes with out.log() reaches the browsers and scripts watching the run as a
StepLogEvent, in order; out.progress() as a StepProgressEvent (docs/redis.md, "External
producers"). EPOCHS (default 5) and EPOCH_SECONDS (default 0.5) shape the fake training.
"""
import os
import sys
import time

sys.dont_write_bytecode = True  # leave no __pycache__ in examples/external/
# The dependency-free Redis client lives in examples/external/: copy it next to your own script.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "external"))
from flowcast_ingest import FlowcastIngest  # noqa: E402


def main():
    run_id, step = os.environ["RUN_ID"], os.environ["STEP"]
    epochs = int(os.environ.get("EPOCHS", "5"))
    pause = float(os.environ.get("EPOCH_SECONDS", "0.5"))
    out = FlowcastIngest(run_id, step, url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"), prefix=os.environ.get("FLOWCAST_PREFIX", "flowcast:"))
    try:
        out.log("python %s: training for %d epochs" % (sys.version.split()[0], epochs))
        loss = 1.0
        for epoch in range(1, epochs + 1):
            time.sleep(pause)
            loss *= 0.6
            out.log("epoch %d: loss %.4f" % (epoch, loss))
            out.progress(epoch / epochs, "epoch %d of %d" % (epoch, epochs))
        out.log("done: final loss %.4f" % loss)
    finally:
        out.close()
    print("train.py: %d epochs reported to run %s" % (epochs, run_id))


if __name__ == "__main__":
    main()
