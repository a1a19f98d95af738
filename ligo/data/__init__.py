"""Corpus -> tokenizer -> HDF5 token cache -> fixed-size blocks -> MLM / CLM batches."""
