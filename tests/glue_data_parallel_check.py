"""Run by tests/test_glue.py, in one process and under torchrun: one SST-2 fine-tuning run
(data-parallel when there are several processes); process 0 saves the weights and score."""
import sys
from pathlib import Path

import torch
from transformers import AutoTokenizer

from ligo import distributed
from ligo.glue import TASKS, FinetuneArgs, finetune, load_task_data

model_dir, task_dir, out = sys.argv[1:4]
info = distributed.init_distributed()
task = TASKS["SST-2"]
train, devs, _ = load_task_data(task, Path(task_dir), False, 33)  # batches of 16, 16 and 1 row
args = FinetuneArgs(max_seq_length=48, batch_size=16, epochs=2, data_parallel=info.enabled)
metrics, score, model = finetune(model_dir, AutoTokenizer.from_pretrained(model_dir), task, train,
                                 devs, 3e-4, 1, args, info=info)
if info.is_main:
    torch.save({"state": model.state_dict(), "score": score}, out)
distributed.shutdown(info)
