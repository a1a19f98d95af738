#!/usr/bin/env python
"""Train a LiGO growth operator on the large model's loss; torchrun-able. See ligo/grow_train.py."""
import sys

from ligo.grow_train import cli

if __name__ == "__main__":
    cli(sys.argv[1:])
