"""OlmoTrace over a flow's own training data: an infini-gram index of exactly the tokens the training stages consumed
(build.py over corpus.py), opened for queries (index.py), and OlmoTrace's span rules over a model's output
(spans.py); the trace-ui page (server.py).

    corpus.py   the training documents of a curate artifact: shards per part and domain, post-training text
    vocab.py    the corpus's distinct token ids as a dense 16-bit range (infini-gram's engine takes u16 ids)
    tokens.py   a tokenizer's identity, and a text's token ids with their character offsets
    build.py    write the engine's files and the document table, run infini-gram's indexer
    index.py    an index opened for queries: counts, occurrences, documents, the tokenizer check
    spans.py    maximal self-contained spans, ranked long and rare first, merged for display, with documents
    config.py   the trace-index stage's config section
"""
