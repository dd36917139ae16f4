"""`make bench`: run every benchmark in bench/ and write bench/RESULTS.md, one table of each ratio against its peer,
with the machine, the date and the commit.

    python bench/report.py                  # every bench with its defaults (slow on 2 cores: tens of minutes)
    python bench/report.py --only dedup trace --quick
    python bench/report.py --render         # RESULTS.md again from the kept results, running nothing

Each bench runs as its own process (its own imports and threads), its output kept in .bench/logs/{name}.log (git
ignores .bench/) and its figures read from the lines it prints for people (the same lines the benches' docs
describe), so a bench needs no second output format. Each bench's figures are also kept in .bench/results/{name}.json
with the date and commit they were measured at; RESULTS.md is written from all of them, so `--only NAME` re-measures
one bench and keeps the others' rows (each row says when and at which commit it was measured). A bench that fails
or prints no ratio gets a row that says so, the others still run, and the exit status is 1 then.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
NUM = r"([0-9][0-9,]*\.?[0-9]*)"
DIRTY = " (with uncommitted changes in olmoflow/ or bench/)"


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    peer: str
    ratio: str
    """Regex whose first group is the ratio (ours against the peer, > 1 = ours is better)."""
    meaning: str
    ours: str
    """Regex whose first group is our figure, in `unit`."""
    theirs: str
    unit: str
    quick: tuple[str, ...] = ()
    """Arguments for --quick: a smaller run of the same measurement."""
    args: tuple[str, ...] = ()
    """Arguments always passed (one script that measures two things runs as two benches)."""


BENCHES = (
    Bench("train_step", "train_step.py", "transformers Olmo3ForCausalLM (sdpa), Trainer's step",
          r"ratio olmoflow / transformers: " + NUM + "x", "tokens/s, ours / peer",
          r"^\s*olmoflow: +" + NUM + " tokens/s", r"^\s*transformers: +" + NUM + " tokens/s", "tokens/s",
          ("--steps", "4")),
    Bench("dedup", "dedup.py", "datatrove MinHash dedup (4-step pipeline)",
          r"/ datatrove: " + NUM + "x docs/s", "docs/s, ours / peer",
          r"^olmoflow@0.8 +\d+ +[0-9.]+ +" + NUM, r"^datatrove +\d+ +[0-9.]+ +" + NUM, "docs/s",
          ("--docs", "1500", "--repeats", "1")),
    Bench("post_logprobs", "post_logprobs.py", "lm_head -> float logits -> log_softmax -> gather (TRL's way)",
          r"ratio olmoflow / log_softmax: " + NUM + "x faster", "step time, peer / ours",
          r"^\s*olmoflow: +" + NUM + " ms", r"^\s*log_softmax: +" + NUM + " ms", "ms/step",
          ("--tokens", "1024", "--steps", "2")),
    Bench("cached_rerun", "cached_rerun.py", "the floor: KFP executor start-ups + the driver's imports",
          r"re-run / floor = " + NUM + "x", "seconds, ours / floor (1.0 = the floor; lower is better)",
          r"median " + NUM + " s", r"floor " + NUM + " s", "s",
          ("--repeats", "1", "--floor-repeats", "2")),
    Bench("trace", "trace.py", "the target: 100 ms per 100-token output (issue 15)",
          r"trace a 100-token output: median " + NUM + " ms", "target / median latency",
          r"median " + NUM + " ms", r"target <= " + NUM + " ms", "ms",
          ("--tokens", "200000", "--outputs", "10")),
    Bench("eval", "eval.py", "lm-eval-harness HFLM.loglikelihood (transformers)",
          r"ratio olmoflow / lm-eval: " + NUM + "x", "items/s, ours / peer",
          r"^\s*olmoflow: +" + NUM + " items/s", r"^\s*lm-eval: +" + NUM + " items/s", "items/s",
          ("--items", "50")),
    Bench("rollout_gen", "rollout.py", "transformers generate (Olmo3ForCausalLM, dynamic KV cache), static batches",
          r"generation ratio engine / transformers: " + NUM + "x", "tokens/s, ours / peer",
          r"^\s*olmoflow: +" + NUM + " tokens/s", r"^\s*transformers: +" + NUM + " tokens/s", "tokens/s",
          ("--prompts", "16", "--repeats", "1"), ("--part", "gen")),
    Bench("rollout_rl", "rollout.py", "synchronous RL (max_lag 0), one actor + one learner",
          r"rl ratio in-flight / synchronous: " + NUM + "x", "steps/min, in-flight updates / synchronous",
          r"in-flight \(max_lag 1\): +" + NUM + " steps/min", r"synchronous \(max_lag 0\): +" + NUM + " steps/min",
          "steps/min", ("--steps", "6", "--repeats", "1"), ("--part", "rl")),
)


def _find(pattern: str, text: str) -> re.Match[str] | None:
    return re.search(pattern, text, re.MULTILINE)


def _number(s: str) -> float:
    return float(s.replace(",", ""))


def parse(bench: Bench, output: str) -> dict[str, object]:
    """The bench's figures from its printed lines; "ratio" is None when it printed none."""
    m = _find(bench.ratio, output)
    ratio = _number(m.group(1)) if m else None
    if bench.name == "trace" and m:
        target = _find(bench.theirs, output)
        ratio = _number(target.group(1)) / ratio if target and ratio else None  # latency: lower is better
    ours, theirs = _find(bench.ours, output), _find(bench.theirs, output)
    return {"bench": bench.name, "ratio": ratio, "peer": bench.peer, "meaning": bench.meaning,
            "ours": f"{ours.group(1)} {bench.unit}" if ours else "",
            "theirs": f"{theirs.group(1)} {bench.unit}" if theirs else ""}


def run(bench: Bench, quick: bool, logs: Path, stamp: dict[str, str]) -> dict[str, object]:
    cmd = [sys.executable, str(BENCH / bench.script), *bench.args, *(bench.quick if quick else ())]
    print(f"== {bench.name}: {' '.join(cmd[1:])}", flush=True)
    load = os.getloadavg()[0]  # other work on the machine: the alternating benches spread it, not remove it
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - started
    output = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout)  # colours (KFP's) out of the log and the table
    (logs / f"{bench.name}.log").write_text(output)
    print(output, flush=True)
    result = {**parse(bench, output), "wall_s": round(wall, 1), "args": " ".join(cmd[2:]), "load": round(load, 1),
              **stamp}
    if proc.returncode != 0 or result["ratio"] is None:
        lines = [line.strip() for line in output.splitlines() if line.strip()] or ["no output"]
        # the first line that says what went wrong, else the last one
        cause = next((line for line in lines if re.search(r"Error\b|error:|failed to|No such", line)), lines[-1])
        result["error"] = f"exit {proc.returncode}: {cause[:200]}"
    # One machine-readable line per bench, for whoever reads the log rather than RESULTS.md.
    print("RESULT " + json.dumps(result), flush=True)
    return result


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} cores usable ({os.cpu_count()} online), {platform.system()} {platform.release()}"


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()
    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "olmoflow", "bench")
    return f"{head}{DIRTY}" if dirty else head


def render(results: list[dict[str, object]]) -> str:
    scripts = {b.name: b.script for b in BENCHES}
    rows = ["| benchmark | peer | ours | peer's | ratio | ratio is | wall | load | measured (UTC, commit, run) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        ratio = f"**{r['ratio']:.2f}x**" if isinstance(r["ratio"], float) else f"failed ({r.get('error', '')})"
        script = scripts.get(str(r["bench"]), f"{r['bench']}.py")
        rows.append(f"| [{r['bench']}]({script}) | {r['peer']} | {r['ours']} | {r['theirs']} | {ratio} | "
                    f"{r['meaning']} | {r['wall_s']:.0f} s | {r.get('load', '?')} | {r['date']}, "
                    f"{str(r['commit']).replace(DIRTY, '+')}, "
                    f"{'--quick' if r.get('quick') else 'defaults'} |")
    dates = sorted(str(r["date"]) for r in results)
    commits = sorted({str(r["commit"]) for r in results})
    return "\n".join([
        "# Benchmark results",
        "",
        "Written by `make bench` (bench/report.py), which runs every benchmark in bench/ against its named peer in",
        "the same process tree on the same machine. Each bench's docstring says what is measured and how; the full",
        "output of this run is in .bench/logs/ on the machine that ran it. Ratios above 1 favour olmoflow, except",
        "cached_rerun's: 1.0 is the floor no re-run can go under.",
        "",
        f"- machine: {machine()}",
        f"- date: {dates[0]} to {dates[-1]} UTC" if len(set(dates)) > 1 else f"- date: {dates[0]} UTC",
        f"- commit: {', '.join(c.replace(DIRTY, '+') for c in commits)}",
        "- run: each bench with its defaults unless its row says --quick (smaller sizes, same measurements); load",
        "  is the 1-minute load average when the bench started (other work on the cores: the benches alternate",
        "  their two sides so it hits both, but a loaded machine moves the ratios; `?`: not recorded); `+` after a",
        "  commit: measured with uncommitted changes in olmoflow/ or bench/ (several people work in this tree)",
        "",
        *rows,
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=[b.name for b in BENCHES], help="run these benches only")
    ap.add_argument("--quick", action="store_true", help="each bench's smaller run")
    ap.add_argument("--render", action="store_true", help="rewrite RESULTS.md from the kept results; run nothing")
    ap.add_argument("--out", type=Path, default=BENCH / "RESULTS.md")
    args = ap.parse_args(argv)
    started = datetime.datetime.now(datetime.UTC)
    logs = REPO / ".bench" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stored = REPO / ".bench" / "results"
    stored.mkdir(parents=True, exist_ok=True)
    stamp = {"date": f"{started:%Y-%m-%d %H:%M}", "commit": commit(), "quick": args.quick}
    ran = []
    for b in BENCHES:
        if not args.render and (not args.only or b.name in args.only):
            ran.append(run(b, args.quick, logs, stamp))
            (stored / f"{b.name}.json").write_text(json.dumps(ran[-1], indent=1))
    results = [json.loads((stored / f"{b.name}.json").read_text()) for b in BENCHES
               if (stored / f"{b.name}.json").exists()]
    args.out.write_text(render(results))
    print(f"wrote {args.out}")
    return 1 if any("error" in r for r in ran) else 0


if __name__ == "__main__":
    sys.exit(main())
