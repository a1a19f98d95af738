"""ligo: grow small pretrained transformers into large ones.

    import ligo
    big = ligo.grow("out/bert-small", "configs/bert-6L-512H.json", depth="stack",
                    width="bert2bert_aki")            # a ready transformers model
"""


def grow(small, large_config, depth: str = "stack", width: str | None = None, **options):
    """See ligo.operators.grow (imported lazily: `import ligo` stays cheap)."""
    from ligo.operators import grow as _grow

    return _grow(small, large_config, depth=depth, width=width, **options)
