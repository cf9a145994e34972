// Plain JS, no build step, no network beyond this server: a conversation with the twin over POST /rag
// (Server-Sent Events with "progress": status, sources, token, done, error), the author picker over
// GET /authors, and thumbs up/down over POST /feedback when the server has that route.
"use strict";

const $ = (id) => document.getElementById(id);
const STORAGE_KEY = "llm-twin.conversation.v1";
// Server limits for `history` (domain/limits.py): the oldest turns are dropped to stay inside them.
const MAX_HISTORY_TURNS = 20, MAX_HISTORY_CHARS = 16000;

const form = $("ask"), query = $("query"), authorInput = $("author"), conversationEl = $("conversation");
const state = { turns: [], feedback: false, controller: null, authors: new Map() };

// --- small DOM helpers ------------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}
const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;
const PLURALS = { person: "people", repository: "repositories" };
const plural = (n, word) => `${n} ${n === 1 ? word : PLURALS[word] || `${word}s`}`;
const prefersReducedMotion = () => window.matchMedia("(prefers-reduced-motion: reduce)").matches;

// --- persistence --------------------------------------------------------------------------------
function save() {
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify({ turns: state.turns, author: authorInput.value }));
  } catch { /* storage full or disabled: the conversation just does not survive a reload */ }
}
function load() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORAGE_KEY) || "null");
    if (saved && Array.isArray(saved.turns)) {
      state.turns = saved.turns.map((t) => ({ ...t, streaming: false }));
      authorInput.value = saved.author || "";
    }
  } catch { state.turns = []; }
}

// --- the conversation's history for a follow-up -------------------------------------------------
function history() {
  const pairs = [];
  for (const t of state.turns) {
    if (t.answer && !t.error) pairs.push({ role: "user", content: t.query }, { role: "assistant", content: t.answer });
  }
  while (pairs.length > MAX_HISTORY_TURNS || pairs.reduce((n, p) => n + p.content.length, 0) > MAX_HISTORY_CHARS) {
    pairs.splice(0, 2);
  }
  return pairs;
}

// --- rendering a turn ---------------------------------------------------------------------------
function turnView(index) {
  let article = $(`turn-${index}`);
  if (!article) {
    article = el("article", { class: "turn", id: `turn-${index}`, "aria-labelledby": `q-${index}` });
    conversationEl.append(article);
  }
  return article;
}

function renderTurn(index) {
  const t = state.turns[index];
  const article = turnView(index);
  const meta = el("p", { class: "turn-meta" });
  if (t.resolvedAuthor) meta.append(el("span", { class: "badge", text: `as ${t.resolvedAuthor}` }));
  if (t.rewritten_query) meta.append(el("span", { class: "rewritten", text: `searched as “${t.rewritten_query}”` }));
  const answer = el("div", {
    class: "answer", id: `answer-${index}`, "aria-live": "polite", "aria-busy": t.streaming ? "true" : "false",
    "aria-label": "Answer",
  });
  renderAnswer(answer, t, index);
  article.replaceChildren(...[
    el("h2", { class: "question", id: `q-${index}`, text: t.query }),
    meta,
    statusView(t, index),
    answer,
    t.error ? el("p", { class: "turn-error", role: "alert", text: t.error }) : null,
    t.sources ? sourcesView(t, index) : null,
    t.done || t.stopped || t.error ? aboutView(t) : null,
    t.done && state.feedback && t.trace_id ? feedbackView(t, index) : null,
  ].filter(Boolean));
}

// [what is happening, a running clock]: only the first part is announced (the clock ticks silently).
function statusParts(t) {
  if (t.stopped) return ["Stopped.", ""];
  if (t.error) return ["", ""];
  if (t.done) {
    const ms = t.timings_ms || {};
    const parts = [];
    if (ms.total !== undefined) parts.push(`Answered in ${seconds(ms.total)}`);
    if (ms.ttft !== undefined) parts.push(`first words after ${seconds(ms.ttft)}`);
    return [parts.join(", ") + (parts.length ? "." : ""), ""];
  }
  // While streaming, the clock keeps running between events (the first token can take 20-30 s on a CPU).
  const last = t.statuses && t.statuses[t.statuses.length - 1];
  const since = (at) => (t.streaming && at !== undefined ? performance.now() - at : 0);
  if (last) return [`${last.message}…`, ` (${seconds(last.elapsed_ms + since(last.receivedAt))})`];
  return t.sources ? ["Writing…", ""] : ["Sending the question…", ` (${seconds(since(t.sentAt))})`];
}

function statusView(t, index) {
  const [text, clock] = statusParts(t);
  return el("p", { class: "status", id: `status-${index}`, role: "status" },
    el("span", { class: "status-text", text }), el("span", { class: "clock", "aria-hidden": "true", text: clock }));
}

function updateStatus(t, index) {
  const line = $(`status-${index}`);
  if (!line) return;
  const [text, clock] = statusParts(t);
  const [textEl, clockEl] = line.children;
  if (textEl.textContent !== text) textEl.textContent = text;
  clockEl.textContent = clock;
}

// `[n]` in the answer become links to source n (only for n that exist).
function renderAnswer(node, t, index) {
  const text = t.answer || "";
  const count = t.sources ? t.sources.length : 0;
  const parts = [];
  let last = 0;
  for (const match of text.matchAll(/\[(\d+)\]/g)) {
    const n = Number(match[1]);
    if (n < 1 || n > count) continue;
    parts.push(text.slice(last, match.index));
    parts.push(el("a", {
      class: "cite", href: `#t${index}-s${n}`, "data-source": n, "aria-label": `source ${n}`,
      onclick: (e) => { e.preventDefault(); highlightSource(index, n); },
    }, `[${n}]`));
    last = match.index + match[0].length;
  }
  parts.push(text.slice(last));
  node.replaceChildren(...parts);
}

function highlightSource(index, n) {
  const target = $(`t${index}-s${n}`);
  if (!target) return;
  for (const other of document.querySelectorAll(".passage.highlight")) other.classList.remove("highlight");
  target.classList.add("highlight");
  target.scrollIntoView({ block: "center", behavior: prefersReducedMotion() ? "auto" : "smooth" });
  target.focus({ preventScroll: true });
}

// Sources grouped by document (two chunks of one PEP are one entry with two passages).
function sourcesView(t, index) {
  const groups = new Map();
  t.sources.forEach((s, i) => {
    const key = s.document_id || s.link || `${s.title}|${s.author_full_name}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push({ source: s, n: i + 1 });
  });
  const list = el("ol", { class: "docs" });
  for (const items of groups.values()) {
    const s = items[0].source;
    const title = s.title || s.snippet.slice(0, 80);
    const head = s.link
      ? el("a", { class: "doc-title", href: s.link, target: "_blank", rel: "noopener" }, title)
      : el("span", { class: "doc-title", text: title });
    const facts = [s.content_type, (s.authors || [s.author_full_name]).join(", ")];
    if (s.date) facts.push(String(s.date).split("T")[0]);  // ISO timestamps: the day is enough
    const passages = el("ul", { class: "passages" });
    for (const { source, n } of items) {
      passages.append(el("li", { class: "passage", id: `t${index}-s${n}`, tabindex: "-1" },
        el("span", { class: "num", text: `[${n}]` }),
        source.snippet,
        el("span", { class: "meta", text: ` (score ${Number(source.score).toFixed(3)})` })));
    }
    list.append(el("li", { class: "doc" }, head, el("p", { class: "meta doc-facts", text: facts.join(" · ") }), passages));
  }
  const section = el("section", { class: "sources", "aria-labelledby": `sources-h-${index}` },
    el("h3", { id: `sources-h-${index}`, text: t.sources.length ? `Sources (${plural(groups.size, "document")})` : "Sources" }));
  section.append(t.sources.length ? list : el("p", { class: "meta", text: "No sources found." }));
  return section;
}

// What the answer rests on: queries searched, degradations, timings, the trace id for a bug report.
function aboutView(t) {
  const warnings = t.warnings || [];
  const summary = el("summary", {}, "How this answer was found");
  if (warnings.length) summary.append(el("span", { class: "warn", text: ` (${plural(warnings.length, "warning")})` }));
  const body = [summary];
  if (t.rewritten_query) body.push(el("p", {}, "Follow-up searched as: ", el("q", { text: t.rewritten_query })));
  if (t.expanded_queries && t.expanded_queries.length) {
    body.push(el("p", { text: "Searched with:" }),
      el("ul", {}, ...t.expanded_queries.map((q) => el("li", { text: q }))));
  }
  if (warnings.length) {
    body.push(el("p", { class: "warn", text: "Degradations:" }),
      el("ul", { class: "warnings" }, ...warnings.map((w) => el("li", { class: "warn", text: w }))));
  }
  const facts = [];
  if (t.model) facts.push(`model ${t.model}`);
  if (t.rerank) facts.push(`rerank ${t.rerank}`);
  for (const [key, value] of Object.entries(t.timings_ms || {})) facts.push(`${key} ${Math.round(value)} ms`);
  if (facts.length) body.push(el("p", { class: "meta timings", text: facts.join(" · ") }));
  if (t.statuses && t.statuses.length) {
    body.push(el("p", { text: "Stages:" }), el("ul", { class: "stages" },
      ...t.statuses.map((s) => el("li", { text: `${seconds(s.elapsed_ms)} — ${s.message}` }))));
  }
  body.push(el("p", { class: "trace" }, "Trace id: ",
    t.trace_id ? el("code", { text: t.trace_id }) : el("span", { class: "meta", text: "not available" })));
  return el("details", { class: "about" }, ...body);
}

function feedbackView(t, index) {
  const fb = t.feedback || {};
  const box = el("div", { class: "feedback", role: "group", "aria-label": "Feedback on this answer" });
  if (fb.sent) {
    box.append(el("p", { class: "meta", role: "status", text: "Thanks, your feedback was recorded." }));
    return box;
  }
  const choose = (score) => { t.feedback = { ...fb, score }; save(); renderTurn(index); focusIn(index, ".comment"); };
  box.append(el("div", { class: "row" },
    el("button", { type: "button", class: "secondary thumb-up", "aria-pressed": String(fb.score === 1), onclick: () => choose(1) }, el("span", { "aria-hidden": "true", text: "▲ " }), "Helpful"),
    el("button", { type: "button", class: "secondary thumb-down", "aria-pressed": String(fb.score === -1), onclick: () => choose(-1) }, el("span", { "aria-hidden": "true", text: "▼ " }), "Not helpful")));
  if (fb.score) {
    const id = `comment-${index}`;
    const comment = el("textarea", { id, class: "comment", maxlength: "2000", rows: "2" });
    comment.value = fb.comment || "";
    const error = el("p", { class: "form-error", role: "alert" });
    box.append(el("label", { for: id, text: "Comment (optional)" }), comment, el("div", { class: "row" },
      el("button", { type: "button", class: "send-feedback", onclick: () => sendFeedback(t, index, comment.value, error) }, "Send feedback")), error);
  }
  return box;
}

function focusIn(index, selector) {
  const node = turnView(index).querySelector(selector);
  if (node) node.focus();
}

async function sendFeedback(t, index, comment, errorEl) {
  const body = { trace_id: t.trace_id, score: t.feedback.score };
  if (comment.trim()) body.comment = comment.trim();
  try {
    const response = await fetch("/feedback", {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
    });
    if (!response.ok) {
      const payload = await response.json().catch(() => ({}));
      errorEl.textContent = (payload.error && payload.error.message) || `Feedback failed (HTTP ${response.status}).`;
      return;
    }
    t.feedback = { score: t.feedback.score, comment: body.comment, sent: true };
    save();
    renderTurn(index);
  } catch {
    errorEl.textContent = "Feedback could not be sent.";
  }
}

function renderAll() {
  conversationEl.replaceChildren();
  state.turns.forEach((_, i) => renderTurn(i));
  $("query-label").textContent = state.turns.length ? "Your follow-up question" : "Your question";
}

// --- asking ---------------------------------------------------------------------------------------
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

function setBusy(busy) {
  $("submit").disabled = busy;
  $("stop").hidden = !busy;
}

function showFormError(message) {
  $("form-error").textContent = message;
  query.setAttribute("aria-invalid", message ? "true" : "false");
}

function apply(t, event, data) {
  if (event === "status") {
    t.statuses.push({ stage: data.stage, message: data.message, elapsed_ms: data.elapsed_ms, receivedAt: performance.now() });
  } else if (event === "sources") {
    Object.assign(t, {
      sources: data.sources, resolvedAuthor: data.author ? data.author.full_name : null,
      expanded_queries: data.expanded_queries, warnings: data.warnings || [], rewritten_query: data.rewritten_query,
      model: data.model, rerank: data.rerank, timings_ms: data.timings_ms,
    });
  } else if (event === "token") {
    t.answer += data.text;
  } else if (event === "done") {
    Object.assign(t, { answer: data.answer, timings_ms: data.timings_ms, model: data.model, done: true, streaming: false });
    if (data.trace_id) t.trace_id = data.trace_id;
  } else if (event === "error") {
    t.error = (data.error && data.error.message) || "Something went wrong.";
    t.streaming = false;
  }
}

async function ask(text) {
  const body = { query: text, stream: true, progress: true };
  const author = authorInput.value.trim();
  if (author) body.author = author;
  if ($("k").value) body.k = Number($("k").value);
  const past = history();
  if (past.length) body.history = past;

  const t = { query: text, author, answer: "", statuses: [], streaming: true, sentAt: performance.now() };
  state.turns.push(t);
  const index = state.turns.length - 1;
  renderAll();
  turnView(index).scrollIntoView({ block: "start", behavior: prefersReducedMotion() ? "auto" : "smooth" });
  state.controller = new AbortController();
  setBusy(true);
  const ticker = setInterval(() => { if (t.streaming) updateStatus(t, index); }, 500);
  try {
    const response = await fetch("/rag", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "text/event-stream" },
      body: JSON.stringify(body),
      signal: state.controller.signal,
    });
    t.trace_id = response.headers.get("x-trace-id") || undefined;
    if (!response.ok) {
      const payload = await response.json().catch(() => ({}));
      const error = payload.error || {};
      t.error = error.message ? `${error.field ? error.field + ": " : ""}${error.message}` : `HTTP ${response.status}`;
      t.streaming = false;
      return;
    }
    for await (const { event, data } of sseEvents(response.body)) {
      apply(t, event, data);
      // Tokens only touch the answer and the status line; everything else re-renders the turn.
      if (event === "token") {
        renderAnswer($(`answer-${index}`), t, index);
        updateStatus(t, index);
      } else {
        renderTurn(index);
      }
    }
    if (!t.done && !t.error) t.error = "The answer was cut off.";
  } catch (error) {
    if (error.name === "AbortError") t.stopped = true;
    else t.error = "The connection failed.";
  } finally {
    clearInterval(ticker);
    t.streaming = false;
    state.controller = null;
    setBusy(false);
    save();
    renderTurn(index);
  }
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  if (state.controller) return;
  const text = query.value.trim();
  if (!text) {
    showFormError("Please type a question first.");
    query.focus();
    return;
  }
  showFormError("");
  query.value = "";
  ask(text);
});
$("stop").addEventListener("click", () => state.controller && state.controller.abort());
query.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) form.requestSubmit();
});
query.addEventListener("input", () => { if (query.value.trim()) showFormError(""); });
$("new-conversation").addEventListener("click", () => {
  if (state.controller) state.controller.abort();
  state.turns = [];
  save();
  renderAll();
  query.focus();
});

// --- the author picker: a datalist filled from GET /authors as the user types ---------------------
function describeAuthor(a) {
  const counts = Object.entries(a.documents).map(([type, n]) => plural(n, type)).join(", ");
  return `${a.name}: ${counts}`;
}

let authorTimer = null, authorRequest = 0;
async function searchAuthors() {
  const q = authorInput.value.trim();
  const request = ++authorRequest;
  try {
    const response = await fetch(`/authors?limit=50${q ? `&q=${encodeURIComponent(q)}` : ""}`);
    if (!response.ok || request !== authorRequest) return;
    const page = await response.json();
    const options = page.authors.map((a) => {
      state.authors.set(a.name.toLowerCase(), a);
      return el("option", { value: a.name, label: describeAuthor(a) });
    });
    $("author-options").replaceChildren(...options);
    const chosen = state.authors.get(q.toLowerCase());
    $("author-info").textContent = chosen ? describeAuthor(chosen)
      : q ? `${plural(page.total, "person")} match “${q}”.` : `${plural(page.total, "person")} in the corpus; empty means any author.`;
  } catch { /* the picker is a convenience: free text still works */ }
}
authorInput.addEventListener("input", () => {
  clearTimeout(authorTimer);
  authorTimer = setTimeout(searchAuthors, 200);
  save();
});

// --- start ------------------------------------------------------------------------------------------
async function detectFeedback() {
  try {
    const response = await fetch("/openapi.json");
    const spec = response.ok ? await response.json() : {};
    state.feedback = Boolean(spec.paths && spec.paths["/feedback"]);
  } catch { state.feedback = false; }
  document.body.dataset.feedback = String(state.feedback);
  if (state.feedback) renderAll();
}

// A background ingest (`llm-twin serve --ingest/--watch`) reports its progress in /ready: say that
// answers come from what is indexed so far, until it is done.
async function watchIngest() {
  let progress = null;
  try {
    const response = await fetch("/ready");
    progress = (await response.json()).ingest || null;
  } catch { /* not ready yet, or no ingest: nothing to show */ }
  const line = $("ingest");
  const active = progress && (progress.state === "planning" || progress.state === "running");
  line.hidden = !active && !(progress && progress.state === "failed");
  if (active) {
    const eta = progress.eta_s ? `, about ${Math.ceil(progress.eta_s / 60)} min left` : "";
    line.textContent = `Indexing ${progress.source || "new writing"}: ${progress.documents_done} of ` +
      `${progress.documents_total} documents${eta}. Answers use what is indexed so far.`;
    setTimeout(watchIngest, 5000);
  } else if (progress && progress.state === "failed") {
    line.textContent = `Indexing failed: ${progress.error || "see the server log"}.`;
  }
}

load();
renderAll();
watchIngest();
searchAuthors();
detectFeedback();
