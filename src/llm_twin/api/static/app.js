// Plain JS, no build step: POST /rag with stream=true and render the Server-Sent Events.
"use strict";

const $ = (id) => document.getElementById(id);
const form = $("ask"), answerEl = $("answer"), sourcesEl = $("sources"), statusEl = $("status");
let controller = null;

function setBusy(busy) {
  $("submit").disabled = busy;
  $("stop").hidden = !busy;
}

function renderSources(data) {
  sourcesEl.replaceChildren();
  for (const s of data.sources) {
    const li = document.createElement("li");
    const title = s.title || s.snippet.slice(0, 80);
    const head = s.link ? Object.assign(document.createElement("a"), { href: s.link, target: "_blank", rel: "noopener" })
                        : document.createElement("strong");
    head.textContent = title;
    li.append(head, ` — ${s.author_full_name} (${s.content_type}, score ${s.score.toFixed(3)})`);
    const snippet = document.createElement("span");
    snippet.className = "snippet";
    snippet.textContent = s.snippet;
    li.append(snippet);
    sourcesEl.append(li);
  }
  if (!data.sources.length) sourcesEl.innerHTML = "<li>No sources found.</li>";
  const badge = $("author-badge");
  badge.hidden = !data.author;
  if (data.author) badge.textContent = `as ${data.author.full_name}`;
}

function renderTimings(data) {
  const t = data.timings_ms;
  const parts = [`model ${data.model}`, `rerank ${data.rerank}`];
  if (t.ttft !== undefined) parts.push(`first token ${Math.round(t.ttft)} ms`);
  parts.push(`total ${Math.round(t.total)} ms`);
  $("timings").textContent = parts.join(" · ");
}

function showError(error) {
  answerEl.classList.add("error");
  answerEl.textContent = error.message || "Something went wrong.";
  statusEl.textContent = "";
}

// Parse an SSE byte stream: events are separated by a blank line; each has `event:` and `data:` lines.
async function* sseEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trimStart();
      }
      if (data) yield { event, data: JSON.parse(data) };
    }
  }
}

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  const body = { query: $("query").value, stream: true };
  if ($("author").value.trim()) body.author = $("author").value.trim();
  if ($("k").value) body.k = Number($("k").value);

  controller = new AbortController();
  setBusy(true);
  $("result").hidden = false;
  answerEl.classList.remove("error");
  answerEl.textContent = "";
  sourcesEl.replaceChildren();
  $("timings").textContent = "";
  statusEl.textContent = "Searching…";
  try {
    const response = await fetch("/rag", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "text/event-stream" },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!response.ok) {
      const payload = await response.json().catch(() => ({}));
      showError(payload.error || { message: `HTTP ${response.status}` });
      return;
    }
    for await (const { event, data } of sseEvents(response.body)) {
      if (event === "sources") { renderSources(data); statusEl.textContent = "Generating…"; }
      else if (event === "token") { answerEl.textContent += data.text; }
      else if (event === "done") { answerEl.textContent = data.answer; renderTimings(data); statusEl.textContent = ""; }
      else if (event === "error") { showError(data.error); }
    }
  } catch (error) {
    if (error.name === "AbortError") statusEl.textContent = "Stopped.";
    else showError({ message: "The connection failed." });
  } finally {
    setBusy(false);
    controller = null;
  }
});

$("stop").addEventListener("click", () => controller && controller.abort());
$("query").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) form.requestSubmit();
});
