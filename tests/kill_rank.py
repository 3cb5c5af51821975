"""``longlive train`` under torchrun with rank 1 killed (SIGKILL) right after it wrote its shards of checkpoint 2."""

import os
import signal

from torch.distributed.checkpoint.filesystem import FileSystemWriter

from longlive_cli.train.cli import main

original = FileSystemWriter.write_data
saves = []


def write_data(self, plan, planner):
    written = original(self, plan, planner)
    written.wait()
    saves.append(1)
    if len(saves) == 2 and os.environ["RANK"] == "1":
        os.kill(os.getpid(), signal.SIGKILL)
    return written


FileSystemWriter.write_data = write_data
main()
