"""The trace-ui page: one HTML file with its script (no package data to ship, no build step)."""

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>olmoflow trace</title>
<style>
  body { font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
  textarea { width: 100%; height: 8rem; font: inherit; }
  #output { white-space: pre-wrap; border: 1px solid #ccc; padding: .75rem; min-height: 2rem; margin: 1rem 0; }
  mark.span { background: #ffe27a; cursor: pointer; border-radius: 3px; }
  mark.span.open { background: #f7b733; }
  #docs li { margin: .5rem 0; }
  .meta { color: #666; font-size: 90%; }
  .snippet b { background: #ffe27a; }
  #doc { white-space: pre-wrap; border-left: 3px solid #f7b733; padding-left: .75rem; }
</style>
</head>
<body>
<h1>Where did the model see this?</h1>
<p class="meta">Index: <span id="index"></span>. Paste a model's output; spans it shares verbatim with the training
data are highlighted (long and rare first, as OlmoTrace ranks them). Click a span for its documents.</p>
<div id="promptbox" hidden>
<p class="meta">Or type a prompt: checkpoint <span id="checkpoint"></span> answers it, and its answer is traced.</p>
<textarea id="prompt" placeholder="a prompt for the checkpoint"></textarea>
<button id="generate">Generate and trace</button>
</div>
<textarea id="text" placeholder="a model's output"></textarea>
<button id="trace">Trace</button> <span id="status" class="meta"></span>
<div id="output"></div>
<ol id="docs"></ol>
<div id="doc"></div>
<script>
const $ = (id) => document.getElementById(id);
let spans = [];
function esc(s) { const d = document.createElement("div"); d.textContent = s; return d.innerHTML; }
async function trace() {
  const text = $("text").value;
  $("status").textContent = "tracing...";
  const r = await fetch("api/trace", {method: "POST", body: JSON.stringify({text})});
  show(text, await r.json());
}
async function generate() {
  $("status").textContent = "generating...";
  const r = await fetch("api/generate", {method: "POST", body: JSON.stringify({prompt: $("prompt").value})});
  const out = await r.json();
  if (out.error) { $("status").textContent = out.error; return; }
  $("text").value = out.text;
  show(out.text, out);
  $("status").textContent += ` (generated in ${out.gen_ms} ms)`;
}
function show(text, out) {
  spans = out.spans || [];
  let html = "", at = 0;
  spans.forEach((s, i) => {
    html += esc(text.slice(at, s.start)) + `<mark class="span" data-i="${i}">${esc(text.slice(s.start, s.end))}</mark>`;
    at = s.end;
  });
  $("output").innerHTML = html + esc(text.slice(at));
  $("docs").innerHTML = ""; $("doc").textContent = "";
  $("status").textContent = out.error ? out.error : `${spans.length} span(s) in ${out.ms} ms`;
}
function showSpan(i) {
  document.querySelectorAll("mark.span").forEach((m) => m.classList.toggle("open", m.dataset.i == i));
  $("docs").innerHTML = spans[i].docs.map((d, j) => {
    const snip = esc(d.snippet).replace(/\*\*(.*?)\*\*/s, "<b>$1</b>");
    return `<li><a href="#" class="doc" data-ix="${d.doc_ix}">${esc(d.source)} / ${esc(d.doc_id)}</a>
      <span class="meta">${esc(d.part)}, ${esc(d.shard)} @ ${d.offset}</span><div class="snippet">${snip}</div></li>`;
  }).join("");
  $("doc").textContent = "";
}
async function showDoc(ix) {
  const d = await (await fetch(`api/doc?ix=${ix}`)).json();
  $("doc").textContent = d.error ? d.error : `${d.source} / ${d.doc_id}\n\n${d.text}`;
}
$("trace").addEventListener("click", trace);
$("generate").addEventListener("click", generate);
$("output").addEventListener("click", (e) => { if (e.target.matches("mark.span")) showSpan(e.target.dataset.i); });
$("docs").addEventListener("click", (e) => {
  const a = e.target.closest("a.doc"); if (a) { e.preventDefault(); showDoc(a.dataset.ix); }
});
fetch("api/info").then((r) => r.json()).then((i) => {
  $("index").textContent = `${i.uri} (${i.docs} documents, ${i.tokens} tokens)`;
  if (i.checkpoint) {
    $("checkpoint").textContent = `${i.checkpoint.uri} (${i.checkpoint.chat ? "chat template" : "plain text"})`;
    $("promptbox").hidden = false;
  }
});
</script>
</body>
</html>
"""
