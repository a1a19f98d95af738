#!/usr/bin/env python
"""Pretrain BERT / RoBERTa (masked LM) or GPT-2 (causal LM); torchrun-able. See ligo/pretrain.py."""
import sys

from ligo.pretrain import cli

if __name__ == "__main__":
    cli(sys.argv[1:])
