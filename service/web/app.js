// docqa web page: sign in with an API key; ask (a conversation with follow-ups) or search,
// within all documents or the ones ticked; read a cited passage in its context; upload,
// follow ingest, list (paged, filtered) and delete documents.
// Plain browser JavaScript, no build step and nothing from outside this server (the page is
// served with Content-Security-Policy: default-src 'self'). Server text is only ever written
// as text (textContent, text nodes), never parsed as HTML.
"use strict";

(() => {
  const KEY_STORAGE = "docqa.apiKey";
  const UNAUTHORIZED = "Sign-in failed: unknown or revoked key.";
  const POLL_MS = 1000;
  const REOPEN_MS = 250; // uploads accepted within this long share one new event stream
  const MAX_BACKOFF_MS = 10_000;
  const MAX_HISTORY = 8; // earlier questions /v1/ask takes (AskRequest.history)
  const MAX_FOLLOWED = 1000; // ids per batch event stream (MAX_BATCH_IDS)
  const CONTEXT_CHARS = 400; // text shown on each side of a cited span
  const MAX_TEXT_CHARS = 20_000; // the most GET /v1/documents/{id}/text returns at once
  const SEARCH_TOP_K = 10;
  const SNIPPET_CHARS = 400;
  const FINAL = new Set(["ready", "failed"]);

  let apiKey = null;
  const live = new Set(); // AbortControllers and XHRs to stop on sign-out
  const rows = new Map(); // document id -> <tr> of the page of the list on screen
  const selected = new Map(); // document id -> filename: the scope of questions and searches
  const list = { offset: 0, limit: 25, name: "", status: "", total: 0, ctl: null };
  let conversation = []; // the questions of the thread on screen, oldest first
  let turns = 0; // numbers the thread's turns (element ids)
  let streamingAsk = true; // false once the server refused {"stream": true}
  let reloadTimer = null;

  const $ = (id) => document.getElementById(id);
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props)) {
      if (name === "text") node.textContent = value;
      else if (name === "className") node.className = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) node.append(child); // strings become text nodes
    return node;
  }

  // ------------------------------------------------------------ errors and messages

  class Unauthorized extends Error {}

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  function showMessage(text) {
    $("message").textContent = text;
    if (text) $("status").textContent = "";
  }

  function announce(text) {
    $("status").textContent = text;
  }

  const isAbort = (err) => err && err.name === "AbortError";

  function describe(err) {
    return err instanceof ApiError ? err.message : `Could not reach the server (${err})`;
  }

  function report(err) {
    if (err instanceof Unauthorized || isAbort(err)) return;
    showMessage(describe(err));
  }

  // problem+json (RFC 9457) bodies carry a `detail` meant for people
  function problemDetail(status, statusText, body) {
    if (body && typeof body === "object" && (body.detail || body.title)) {
      return String(body.detail || body.title);
    }
    return `HTTP ${status}${statusText ? " " + statusText : ""}`;
  }

  async function problemOf(resp) {
    let body = null;
    try {
      body = await resp.json();
    } catch (_) {
      // not JSON: fall back to the status line
    }
    return problemDetail(resp.status, resp.statusText, body);
  }

  // ------------------------------------------------------------ API calls

  function authHeaders(extra = {}) {
    return { Authorization: `Bearer ${apiKey}`, ...extra };
  }

  function unauthorized() {
    signOut(UNAUTHORIZED);
    return new Unauthorized();
  }

  async function api(method, path, body, signal) {
    const init = { method, headers: authHeaders(), signal, cache: "no-store" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(path, init);
    if (resp.status === 401) throw unauthorized();
    if (!resp.ok) throw new ApiError(resp.status, await problemOf(resp));
    return resp;
  }

  const docPath = (id) => `/v1/documents/${encodeURIComponent(id)}`;

  function sleep(ms, signal) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(resolve, ms);
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(new DOMException("stopped", "AbortError"));
      }, { once: true });
    });
  }

  // Server-sent events read from a fetch() body: EventSource cannot send the Authorization
  // header. Yields {event, data} per event; comment lines (": keep-alive") are skipped.
  async function* readEvents(stream) {
    const reader = stream.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let name = "";
    let data = [];
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += decoder.decode(value, { stream: true });
        // a lone "\r" at the end may be the first half of "\r\n": wait for the next chunk
        let match;
        while ((match = /\r\n|\r(?!$)|\n/.exec(buffer)) !== null) {
          const line = buffer.slice(0, match.index);
          buffer = buffer.slice(match.index + match[0].length);
          if (line === "") {
            if (data.length) yield { event: name || "message", data: data.join("\n") };
            name = "";
            data = [];
          } else if (!line.startsWith(":")) {
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            let val = colon < 0 ? "" : line.slice(colon + 1);
            if (val.startsWith(" ")) val = val.slice(1);
            if (field === "event") name = val;
            else if (field === "data") data.push(val);
          }
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  // ------------------------------------------------------------ sign in / out

  async function signIn(key) {
    apiKey = key;
    $("sign-in-error").textContent = "";
    $("sign-in-button").disabled = true;
    try {
      const page = await fetchDocuments();
      sessionStorage.setItem(KEY_STORAGE, key);
      $("sign-in").hidden = true;
      $("workspace").hidden = false;
      $("session").hidden = false;
      $("api-key").value = "";
      renderDocuments(page);
      refreshCounts();
      $("question").focus();
    } catch (err) {
      if (!(err instanceof Unauthorized)) {
        apiKey = null;
        $("sign-in-error").textContent = describe(err);
      }
    } finally {
      $("sign-in-button").disabled = false;
    }
  }

  function signOut(reason = "") {
    apiKey = null;
    sessionStorage.removeItem(KEY_STORAGE);
    for (const job of live) job.abort();
    live.clear();
    stopFollowing();
    clearTimeout(reloadTimer);
    rows.clear();
    selected.clear();
    renderScope();
    $("document-rows").replaceChildren();
    $("no-documents").hidden = false;
    $("counts").textContent = "";
    $("page-info").textContent = "";
    $("uploads").replaceChildren();
    newConversation();
    $("search-results").replaceChildren();
    $("search-summary").textContent = "";
    $("search-query").value = "";
    if ($("passage").open) $("passage").close();
    $("passage-text").replaceChildren();
    showMessage("");
    announce("");
    $("workspace").hidden = true;
    $("session").hidden = true;
    $("sign-in").hidden = false;
    $("sign-in-error").textContent = reason;
    $("api-key").focus();
  }

  // ------------------------------------------------------------ the document list

  async function fetchDocuments() {
    const params = new URLSearchParams({
      limit: String(list.limit), offset: String(list.offset), order: "newest",
    });
    if (list.name) params.set("filename_contains", list.name);
    if (list.status) params.set("status", list.status);
    list.ctl?.abort(); // a newer filter or page supersedes the one still loading
    const ctl = new AbortController();
    list.ctl = ctl;
    live.add(ctl);
    try {
      const page = await (await api("GET", `/v1/documents?${params}`, undefined, ctl.signal))
        .json();
      if (page.items.length === 0 && list.offset > 0 && page.total > 0) {
        // the page emptied (deletes): show the last page there is
        list.offset = Math.floor((page.total - 1) / list.limit) * list.limit;
        return fetchDocuments();
      }
      return page;
    } finally {
      live.delete(ctl);
      if (list.ctl === ctl) list.ctl = null;
    }
  }

  async function loadDocuments() {
    try {
      renderDocuments(await fetchDocuments());
    } catch (err) {
      report(err);
    }
    refreshCounts();
  }

  // many changes in a burst (uploads accepted, deletes) reload the page once
  function scheduleReload() {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(loadDocuments, 300);
  }

  async function refreshCounts() {
    try {
      const c = await (await api("GET", "/v1/documents/counts")).json();
      const ingesting = c.queued + c.processing;
      $("counts").textContent = `${plural(c.total, "document")}: ${c.ready} ready, `
        + `${ingesting} ingesting, ${c.failed} failed.`;
    } catch (err) {
      report(err);
    }
  }

  function renderDocuments(page) {
    list.total = page.total;
    rows.clear();
    $("document-rows").replaceChildren();
    for (const doc of page.items) upsertRow(doc);
    const filtered = list.name || list.status;
    $("no-documents").textContent = filtered ? "No document matches." : "No documents yet.";
    $("no-documents").hidden = rows.size > 0;
    const first = page.items.length ? list.offset + 1 : 0;
    const last = list.offset + page.items.length;
    $("page-info").textContent = page.total
      ? `Documents ${first}–${last} of ${page.total}` : "";
    $("prev-page").disabled = list.offset === 0;
    $("next-page").disabled = last >= page.total;
    for (const doc of page.items) {
      if (!FINAL.has(doc.status)) follow(doc.id);
    }
  }

  function progressText(doc) {
    if (doc.status === "ready") return "done";
    if (doc.status === "failed") return doc.error || "failed";
    const p = doc.progress || {};
    let text = p.stage || doc.status;
    if (p.total) text += ` ${p.done}/${p.total}${p.unit ? " " + p.unit : ""}`;
    return text;
  }

  function upsertRow(doc) {
    let tr = rows.get(doc.id);
    const pick = el("input", { type: "checkbox", "aria-label": `Ask within ${doc.filename}` });
    pick.checked = selected.has(doc.id);
    pick.addEventListener("change", () => {
      if (pick.checked) selected.set(doc.id, doc.filename);
      else selected.delete(doc.id);
      renderScope();
    });
    const del = el("button", {
      type: "button", text: "Delete", "aria-label": `Delete ${doc.filename}`,
    });
    del.addEventListener("click", () => deleteDocument(doc, del));
    const cells = [
      el("td", {}, pick),
      el("td", { text: doc.filename, title: `id ${doc.id}` }),
      el("td", {}, el("span", { className: `status-${doc.status}`, text: doc.status })),
      el("td", { text: progressText(doc) }),
      el("td", { className: "num", text: String(doc.chunks) }),
      el("td", { className: "num", text: String(doc.pages) }),
      el("td", {}, del),
    ];
    if (!tr) {
      tr = el("tr");
      rows.set(doc.id, tr);
      $("document-rows").append(tr);
    }
    tr.dataset.id = doc.id;
    tr.dataset.status = doc.status;
    tr.replaceChildren(...cells);
    $("no-documents").hidden = true;
  }

  function removeRow(id) {
    rows.get(id)?.remove();
    rows.delete(id);
    $("no-documents").hidden = rows.size > 0;
  }

  function forget(id) {
    if (selected.delete(id)) renderScope();
    unfollow(id);
  }

  async function deleteDocument(doc, button) {
    const question = `Delete "${doc.filename}"? Its file, passages and vectors are erased.`;
    if (!window.confirm(question)) return;
    button.disabled = true;
    try {
      await api("DELETE", docPath(doc.id));
      forget(doc.id);
      removeRow(doc.id);
      announce(`Deleted ${doc.filename}.`);
      scheduleReload();
    } catch (err) {
      button.disabled = false;
      if (err instanceof ApiError && err.status === 404) {
        forget(doc.id);
        removeRow(doc.id);
      }
      report(err);
    }
  }

  function applyFilter() {
    list.name = $("filter-name").value.trim();
    list.status = $("filter-status").value;
    list.limit = Number($("page-size").value);
    list.offset = 0;
    loadDocuments();
  }

  function turnPage(step) {
    list.offset = Math.max(0, list.offset + step * list.limit);
    loadDocuments();
  }

  // ------------------------------------------------------------ scope (ticked documents)

  function scopeFilters() {
    return selected.size ? { document_ids: Array.from(selected.keys()) } : undefined;
  }

  function scopeText() {
    if (!selected.size) return "Within all your documents.";
    const names = Array.from(selected.values());
    const shown = names.slice(0, 3).join(", ") + (names.length > 3 ? ", …" : "");
    return `Within ${plural(names.length, "selected document")}: ${shown}`;
  }

  function renderScope() {
    $("scope-text").textContent = scopeText();
    $("clear-scope").hidden = selected.size === 0;
  }

  function clearScope() {
    selected.clear();
    for (const tr of rows.values()) {
      const box = tr.querySelector("input[type=checkbox]");
      if (box) box.checked = false;
    }
    renderScope();
  }

  // ------------------------------------------------------------ ingest progress
  //
  // Every document being ingested is followed by ONE event stream (POST /v1/documents/events
  // with their ids), not one per document: a browser opens at most six connections to a
  // server, and six streams would leave none for asking or deleting. Documents that start
  // meanwhile (uploads) close it and open one for the new set. Where the server has no such
  // stream, or refuses one for now (429: too many open), the page reads their status in one
  // request (POST /v1/documents/status) every second instead.

  const follower = {
    pending: new Map(), // document id -> Set of listeners(doc or null when it is gone)
    run: null, // {ctl, ids} of the stream (or polling) in progress
    timer: null,
    streams: true, // false once the server showed it has no batch stream
  };

  function follow(id, listener) {
    let listeners = follower.pending.get(id);
    if (!listeners) {
      listeners = new Set();
      follower.pending.set(id, listeners);
    }
    if (listener) listeners.add(listener);
    if (!follower.run || !follower.run.ids.has(id)) scheduleFollow();
  }

  function unfollow(id) {
    follower.pending.delete(id); // the stream in progress reports it missing, or polls it once
  }

  function stopFollowing() {
    clearTimeout(follower.timer);
    follower.timer = null;
    follower.run?.ctl.abort();
    follower.run = null;
    follower.pending.clear();
  }

  function scheduleFollow(ms = REOPEN_MS) {
    clearTimeout(follower.timer);
    follower.timer = setTimeout(startFollowing, ms);
  }

  function startFollowing() {
    follower.timer = null;
    follower.run?.ctl.abort(); // the old stream closes before the new one opens
    follower.run = null;
    if (!apiKey || !follower.pending.size) return;
    const ctl = new AbortController();
    const run = { ctl, ids: new Set(Array.from(follower.pending.keys()).slice(0, MAX_FOLLOWED)) };
    follower.run = run;
    live.add(ctl);
    followRun(run)
      .catch(report)
      .finally(() => {
        live.delete(ctl);
        if (follower.run !== run) return; // replaced, or signed out
        follower.run = null;
        if (follower.pending.size && !ctl.signal.aborted) scheduleFollow(0);
      });
  }

  function settled(doc) {
    const listeners = follower.pending.get(doc.id);
    if (rows.has(doc.id)) upsertRow(doc);
    for (const listener of listeners || []) listener(doc);
    if (FINAL.has(doc.status) && listeners) {
      follower.pending.delete(doc.id);
      refreshCounts();
    }
  }

  function gone(id) {
    const listeners = follower.pending.get(id);
    follower.pending.delete(id);
    for (const listener of listeners || []) listener(null);
    if (selected.delete(id)) renderScope();
    removeRow(id);
  }

  async function followRun(run) {
    const { signal } = run.ctl;
    let failures = 0;
    for (;;) {
      const ids = Array.from(run.ids).filter((id) => follower.pending.has(id));
      if (!ids.length) return;
      const outcome = follower.streams ? await streamBatch(ids, signal) : "unavailable";
      if (outcome === "ended") {
        failures = 0;
        continue; // every document settled: the loop ends
      }
      if (outcome === "closed") {
        failures = 0;
        await sleep(POLL_MS, signal); // the stream's time limit (or a proxy's): open another
        continue;
      }
      if (outcome === "unavailable") follower.streams = false;
      // no stream this round: one status read for all of them, then try again
      await pollBatch(ids, signal);
      const wait = outcome === "unavailable" ? POLL_MS
        : Math.min(MAX_BACKOFF_MS, POLL_MS * 2 ** failures++);
      await sleep(wait, signal);
    }
  }

  async function streamBatch(ids, signal) {
    let resp;
    try {
      resp = await fetch("/v1/documents/events", {
        method: "POST",
        headers: authHeaders({ "Content-Type": "application/json", Accept: "text/event-stream" }),
        body: JSON.stringify({ ids }),
        signal,
        cache: "no-store",
      });
    } catch (err) {
      if (signal.aborted) throw err;
      return "failed"; // polling will tell whether the server is there
    }
    if (resp.status === 401) throw unauthorized();
    const type = resp.headers.get("content-type") || "";
    if (!resp.ok || !type.startsWith("text/event-stream") || !resp.body) {
      resp.body?.cancel().catch(() => {});
      // 404/405: a server without the batch stream; 429 and the rest: not now
      return resp.status === 404 || resp.status === 405 ? "unavailable" : "failed";
    }
    try {
      for await (const ev of readEvents(resp.body)) {
        if (ev.event === "progress" || ev.event === "done") {
          settled(JSON.parse(ev.data));
        } else if (ev.event === "missing") {
          for (const id of JSON.parse(ev.data).ids) gone(id);
        } else if (ev.event === "end") {
          return "ended";
        } else if (ev.event === "error") {
          return "failed";
        }
      }
    } catch (err) {
      if (signal.aborted) throw err;
      return "failed"; // the connection dropped
    }
    return "closed"; // before every document settled
  }

  async function pollBatch(ids, signal) {
    try {
      const resp = await api("POST", "/v1/documents/status", { ids }, signal);
      const body = await resp.json();
      for (const doc of body.items) settled(doc);
      for (const id of body.missing) gone(id);
    } catch (err) {
      if (err instanceof Unauthorized || signal.aborted) throw err;
      // the server is away for now: the next round asks again
    }
  }

  // ------------------------------------------------------------ uploads

  function uploadFiles(files) {
    showMessage("");
    for (const file of files) uploadOne(file);
  }

  function uploadOne(file) {
    const bar = el("progress", {
      max: "100", value: "0", "aria-label": `Progress of ${file.name}`,
    });
    const state = el("span", { className: "state", text: "uploading" });
    const item = el("li", {}, el("span", { className: "name", text: file.name }), bar, state);
    item.dataset.state = "uploading";
    $("uploads").prepend(item);

    const setState = (name, text) => {
      item.dataset.state = name;
      state.textContent = text;
      state.className = `state ${name}`;
    };
    const fail = (detail) => {
      setState("failed", `failed: ${detail}`);
      bar.value = 0;
      showMessage(`${file.name}: ${detail}`);
    };

    const xhr = new XMLHttpRequest();
    live.add(xhr);
    xhr.open("POST", "/v1/documents");
    xhr.setRequestHeader("Authorization", `Bearer ${apiKey}`);
    xhr.upload.onprogress = (e) => {
      if (!e.lengthComputable) return;
      bar.max = e.total;
      bar.value = e.loaded;
      setState("uploading", `uploading ${Math.round((100 * e.loaded) / e.total)}%`);
    };
    xhr.onloadend = () => live.delete(xhr);
    xhr.onerror = () => fail("the upload did not reach the server");
    xhr.onload = () => {
      if (xhr.status === 401) {
        unauthorized();
        return;
      }
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch (_) {
        // not JSON: the status line is all there is
      }
      if (xhr.status !== 200 && xhr.status !== 202) {
        fail(problemDetail(xhr.status, xhr.statusText, body));
        return;
      }
      setState("queued", body.duplicate ? "already uploaded (same content)" : "queued");
      bar.removeAttribute("value"); // indeterminate until the worker reports
      scheduleReload(); // the new document's row
      follow(body.id, (doc) => {
        if (doc === null) {
          setState("failed", "deleted");
          return;
        }
        const p = doc.progress || {};
        if (FINAL.has(doc.status)) {
          bar.max = 1;
          bar.value = doc.status === "ready" ? 1 : 0;
        } else if (p.total) {
          bar.max = p.total;
          bar.value = p.done;
        }
        if (doc.status === "ready") {
          setState("ready", `ready: ${plural(doc.chunks, "chunk")}, ${plural(doc.pages, "page")}`);
        } else if (doc.status === "failed") {
          setState("failed", `failed: ${doc.error || "ingest failed"}`);
        } else {
          setState(doc.status, progressText(doc));
        }
      });
    };
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  }

  function setUpDropZone() {
    const zone = $("drop-zone");
    const hasFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types).includes("Files");
    for (const type of ["dragenter", "dragover"]) {
      zone.addEventListener(type, (e) => {
        if (!hasFiles(e)) return;
        e.preventDefault();
        e.dataTransfer.dropEffect = "copy";
        zone.classList.add("dragging");
      });
    }
    zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("dragging");
      if (e.dataTransfer && e.dataTransfer.files.length) uploadFiles(e.dataTransfer.files);
    });
    // a file dropped next to the zone must not make the browser navigate away to it
    for (const type of ["dragover", "drop"]) {
      window.addEventListener(type, (e) => {
        if (hasFiles(e)) e.preventDefault();
      });
    }
  }

  // ------------------------------------------------------------ questions (the thread)

  function newConversation() {
    conversation = [];
    $("thread").replaceChildren();
    $("new-conversation").disabled = true;
    $("question").value = "";
  }

  function addTurn(question) {
    const n = ++turns;
    const draft = el("p", { className: "draft" });
    draft.hidden = true;
    const text = el("p", { className: "answer-text", text: "Looking through your documents…" });
    const sourcesTitle = el("h4", { id: `turn-${n}-sources`, text: "Sources" });
    sourcesTitle.hidden = true;
    const sources = el("ol", { className: "citations", "aria-labelledby": sourcesTitle.id });
    const li = el("li", { className: "turn", id: `turn-${n}` },
      el("p", { className: "question" },
        el("span", { className: "visually-hidden", text: "You asked: " }), question),
      el("p", { className: "scope-note help", text: scopeText() }),
      el("div", { className: "answer", "aria-live": "polite", "aria-busy": "true" },
        draft, text, sourcesTitle, sources));
    li.dataset.state = "asking";
    $("thread").append(li);
    li.scrollIntoView({ block: "nearest" });
    return { n, li, draft, text, sources, sourcesTitle };
  }

  async function ask(question) {
    showMessage("");
    const history = conversation.slice(-MAX_HISTORY);
    const filters = scopeFilters();
    const turn = addTurn(question);
    $("ask-button").disabled = true;
    $("question").value = "";
    const body = { question, history };
    if (filters) body.filters = filters;
    try {
      let result = streamingAsk ? await askStreaming(body, turn) : null;
      if (result === null) result = await (await api("POST", "/v1/ask", body)).json();
      renderAnswer(turn, result);
      conversation.push(question);
      $("new-conversation").disabled = false;
    } catch (err) {
      if (err instanceof Unauthorized) return;
      turn.li.dataset.state = "failed";
      turn.draft.hidden = true;
      turn.text.className = "answer-text error";
      turn.text.textContent = `Not answered: ${describe(err)}`;
      $("question").value = question; // to ask again
      report(err);
    } finally {
      turn.li.querySelector(".answer").setAttribute("aria-busy", "false");
      $("ask-button").disabled = false;
    }
  }

  // The streaming form (`"stream": true`): shows the draft as it comes; the `final` event is
  // authoritative (the verified answer may differ from the draft). Returns null when this
  // server does not stream answers, so the caller asks the plain way.
  async function askStreaming(body, turn) {
    const resp = await fetch("/v1/ask", {
      method: "POST",
      headers: authHeaders({ "Content-Type": "application/json", Accept: "text/event-stream" }),
      body: JSON.stringify({ ...body, stream: true }),
      cache: "no-store",
    });
    if (resp.status === 401) throw unauthorized();
    if (!resp.ok) {
      const detail = await problemOf(resp);
      if ((resp.status === 400 || resp.status === 422) && /\bstream\b/.test(detail)) {
        streamingAsk = false; // an older server: "unknown field stream"
        return null;
      }
      throw new ApiError(resp.status, detail);
    }
    const type = resp.headers.get("content-type") || "";
    if (!type.startsWith("text/event-stream")) {
      // a server that ignored "stream" answers JSON; a stream labelled otherwise is still
      // read as one rather than shown as an error
      const text = await resp.text();
      try {
        return JSON.parse(text);
      } catch (_) {
        return answerFromEvents(new Response(text).body, turn);
      }
    }
    return answerFromEvents(resp.body, turn);
  }

  async function answerFromEvents(body, turn) {
    let draft = "";
    for await (const ev of readEvents(body)) {
      if (ev.event === "token") {
        draft += JSON.parse(ev.data).text || "";
        turn.draft.hidden = false;
        turn.draft.textContent = `Draft: ${draft}`;
      } else if (ev.event === "final") {
        return JSON.parse(ev.data);
      } else if (ev.event === "error") {
        const p = JSON.parse(ev.data);
        throw new ApiError(p.status, problemDetail(p.status, "", p));
      }
    }
    throw new ApiError(0, "the answer stream ended before the final answer; ask again");
  }

  function renderAnswer(turn, result) {
    const { text, sources } = turn;
    turn.draft.hidden = true;
    sources.replaceChildren();
    text.replaceChildren();
    turn.li.dataset.state = result.status;
    if (result.status !== "answered") {
      text.className = "answer-text not-found";
      text.textContent = "Not found in your documents.";
      turn.sourcesTitle.hidden = true;
      return;
    }
    text.className = "answer-text";
    const byN = new Map(result.citations.map((c) => [c.n, c]));
    // "[1]" markers become buttons that show the cited passage in its context
    for (const part of result.answer.split(/(\[\d+\])/)) {
      const m = /^\[(\d+)\]$/.exec(part);
      if (m && byN.has(Number(m[1]))) text.append(citeButton(byN.get(Number(m[1]))));
      else if (part) text.append(part);
    }
    for (const c of result.citations) sources.append(citationItem(turn.n, c));
    turn.sourcesTitle.hidden = result.citations.length === 0;
    // an answer without markers still shows its sources; give them a way in from the text
    if (result.citations.length && !/\[\d+\]/.test(result.answer)) {
      for (const c of result.citations) text.append(" ", citeButton(c));
    }
  }

  function citeButton(c) {
    const button = el("button", {
      type: "button", className: "cite", text: `[${c.n}]`,
      "aria-label": `Show source ${c.n} in context`, "aria-haspopup": "dialog",
    });
    button.addEventListener("click", () => showPassage(c, button));
    return button;
  }

  function citationItem(turnN, c) {
    const page = c.page ? `, page ${c.page}` : "";
    const inContext = el("button", {
      type: "button", className: "in-context", text: "Show in context",
      "aria-haspopup": "dialog", "aria-label": `Show source ${c.n} in context`,
    });
    inContext.addEventListener("click", () => showPassage(c, inContext));
    const details = el("details", { id: `turn-${turnN}-citation-${c.n}` },
      el("summary", { text: `[${c.n}] ${c.filename}${page}` }),
      el("blockquote", { className: "quote", text: c.quote }),
      el("p", {
        className: "meta",
        text: `${c.filename}${page}, characters ${c.start}–${c.end}, `
          + `score ${Number(c.score).toFixed(2)} `,
      }, inContext));
    return el("li", {}, details);
  }

  // ------------------------------------------------------------ a passage in its context

  // `ref`: a citation or a search hit ({document_id, filename, page, start, end}). The text
  // around it comes from GET /v1/documents/{id}/text; the span is marked with <mark>.
  async function showPassage(ref, opener) {
    const dialog = $("passage");
    const body = $("passage-text");
    const page = ref.page ? `, page ${ref.page}` : "";
    $("passage-title").textContent = ref.filename;
    $("passage-meta").textContent = `${ref.filename}${page}, characters ${ref.start}–${ref.end}`;
    body.replaceChildren(el("p", { className: "help", text: "Loading the passage…" }));
    dialog.dataset.state = "loading";
    dialog.returnFocus = opener;
    if (!dialog.open) dialog.showModal();
    // offsets count characters (code points), as Python does; JS strings count UTF-16 units
    const end = Math.min(ref.end, ref.start + MAX_TEXT_CHARS - 2 * CONTEXT_CHARS);
    const params = new URLSearchParams({
      start: String(ref.start), end: String(end), context: String(CONTEXT_CHARS),
    });
    try {
      const got = await (await api("GET", `${docPath(ref.document_id)}/text?${params}`)).json();
      if (!dialog.open || dialog.returnFocus !== opener) return; // closed, or another opened
      const chars = Array.from(got.text);
      const a = Math.max(0, Math.min(chars.length, ref.start - got.start));
      const b = Math.max(a, Math.min(chars.length, end - got.start));
      const mark = el("mark", { text: chars.slice(a, b).join("") });
      const parts = [];
      if (got.start > 0) parts.push("… ");
      parts.push(chars.slice(0, a).join(""), mark, chars.slice(b).join(""));
      if (got.end >= end + CONTEXT_CHARS) parts.push(" …"); // (else the text ends there)
      body.replaceChildren(el("p", { className: "context" }, ...parts));
      dialog.dataset.state = "shown";
      mark.scrollIntoView({ block: "center" });
    } catch (err) {
      if (err instanceof Unauthorized) return;
      dialog.dataset.state = "failed";
      const why = err instanceof ApiError && err.status === 409
        ? "The document is not ready: its text can be read once ingest is done."
        : err instanceof ApiError && err.status === 404
          ? "The document is gone (deleted)." : describe(err);
      body.replaceChildren(el("p", { className: "error", text: why }));
    }
  }

  function closePassage() {
    const dialog = $("passage");
    if (dialog.open) dialog.close();
  }

  // ------------------------------------------------------------ search

  async function search(query) {
    showMessage("");
    $("search-button").disabled = true;
    $("search-summary").textContent = "Searching…";
    $("search-results").replaceChildren();
    const body = { query, top_k: SEARCH_TOP_K };
    const filters = scopeFilters();
    if (filters) body.filters = filters;
    try {
      const { results } = await (await api("POST", "/v1/search", body)).json();
      $("search-summary").textContent = results.length
        ? `${plural(results.length, "passage")} ${scopeText().replace(/^W/, "w")}`
        : "No passage found.";
      for (const hit of results) $("search-results").append(hitItem(hit));
    } catch (err) {
      $("search-summary").textContent = "";
      report(err);
    } finally {
      $("search-button").disabled = false;
    }
  }

  function hitItem(hit) {
    const chars = Array.from(hit.text);
    const snippet = chars.length > SNIPPET_CHARS
      ? chars.slice(0, SNIPPET_CHARS).join("") + " …" : hit.text;
    const page = hit.page ? `page ${hit.page}` : "";
    const open = el("button", {
      type: "button", className: "in-context", text: "Show in context",
      "aria-haspopup": "dialog", "aria-label": `Show in context: ${hit.filename} ${page}`,
    });
    open.addEventListener("click", () => showPassage(hit, open));
    return el("li", { className: "hit" },
      el("p", { className: "hit-source" }, el("strong", { text: hit.filename }),
        page ? `, ${page}` : "", el("span", {
          className: "meta", text: ` score ${Number(hit.score).toFixed(2)}`,
        })),
      el("blockquote", { className: "snippet", text: snippet }),
      el("p", {}, open));
  }

  // ------------------------------------------------------------ tabs

  function selectTab(tab, focus = false) {
    for (const t of document.querySelectorAll("[role=tab]")) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute("aria-controls")).hidden = !on;
    }
    if (focus) tab.focus();
  }

  function setUpTabs() {
    const tabs = Array.from(document.querySelectorAll("[role=tab]"));
    for (const tab of tabs) {
      tab.addEventListener("click", () => selectTab(tab));
      tab.addEventListener("keydown", (e) => {
        const i = tabs.indexOf(tab);
        const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[e.key];
        if (to === undefined) return;
        e.preventDefault();
        selectTab(tabs[(to + tabs.length) % tabs.length], true);
      });
    }
  }

  // ------------------------------------------------------------ wiring

  function start() {
    $("sign-in-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const key = $("api-key").value.trim();
      if (key) signIn(key);
    });
    $("sign-out").addEventListener("click", () => signOut("Signed out."));
    setUpTabs();
    $("ask-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const question = $("question").value.trim();
      if (question && !$("ask-button").disabled) ask(question);
    });
    $("question").addEventListener("keydown", (e) => {
      // Enter asks, Shift+Enter starts a new line
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        $("ask-form").requestSubmit();
      }
    });
    $("new-conversation").addEventListener("click", () => {
      newConversation();
      announce("New conversation.");
      $("question").focus();
    });
    $("search-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const query = $("search-query").value.trim();
      if (query) search(query);
    });
    $("clear-scope").addEventListener("click", clearScope);
    $("filter-form").addEventListener("submit", (e) => {
      e.preventDefault();
      applyFilter();
    });
    $("filter-status").addEventListener("change", applyFilter);
    $("page-size").addEventListener("change", applyFilter);
    $("refresh").addEventListener("click", loadDocuments);
    $("prev-page").addEventListener("click", () => turnPage(-1));
    $("next-page").addEventListener("click", () => turnPage(1));
    $("file-input").addEventListener("change", (e) => {
      uploadFiles(Array.from(e.target.files));
      e.target.value = ""; // choosing the same file again uploads it again
    });
    setUpDropZone();
    $("passage-close").addEventListener("click", closePassage);
    $("passage").addEventListener("close", () => {
      const opener = $("passage").returnFocus;
      $("passage").returnFocus = null;
      if (opener && opener.isConnected) opener.focus();
    });
    const saved = sessionStorage.getItem(KEY_STORAGE);
    if (saved) signIn(saved);
    else $("api-key").focus();
  }

  start();
})();
