"""ligo: grow small pretrained transformers into large ones."""
