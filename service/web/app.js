// docqa web page: sign in with an API key, upload, follow ingest, list, delete, ask.
// Plain browser JavaScript, no build step and nothing from outside this server (the page is
// served with Content-Security-Policy: default-src 'self'). Server text is only ever written
// with textContent, never parsed as HTML.
"use strict";

(() => {
  const KEY_STORAGE = "docqa.apiKey";
  const UNAUTHORIZED = "Sign-in failed: unknown or revoked key.";
  const POLL_MS = 1000;

  let apiKey = null;
  const live = new Set(); // AbortControllers and XHRs to stop on sign-out
  const tracked = new Map(); // document id -> {ctl, listeners} of the progress being followed
  const rows = new Map(); // document id -> <tr>
  let streamingAsk = true; // false once the server refused {"stream": true}

  const $ = (id) => document.getElementById(id);
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props)) {
      if (name === "text") node.textContent = value;
      else if (name === "className") node.className = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) node.append(child);
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

  function report(err) {
    if (err instanceof Unauthorized || (err && err.name === "AbortError")) return;
    showMessage(err instanceof ApiError ? err.message : `Could not reach the server (${err})`);
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
      const docs = await fetchDocuments();
      sessionStorage.setItem(KEY_STORAGE, key);
      $("sign-in").hidden = true;
      $("workspace").hidden = false;
      $("session").hidden = false;
      $("api-key").value = "";
      renderDocuments(docs);
    } catch (err) {
      if (!(err instanceof Unauthorized)) {
        apiKey = null;
        $("sign-in-error").textContent = err instanceof ApiError
          ? err.message : `Could not reach the server (${err})`;
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
    tracked.clear();
    rows.clear();
    $("document-rows").replaceChildren();
    $("no-documents").hidden = false;
    $("uploads").replaceChildren();
    $("answer").hidden = true;
    $("answer-text").replaceChildren();
    $("citations").replaceChildren();
    $("question").value = "";
    showMessage("");
    announce("");
    $("workspace").hidden = true;
    $("session").hidden = true;
    $("sign-in").hidden = false;
    $("sign-in-error").textContent = reason;
    $("api-key").focus();
  }

  // ------------------------------------------------------------ documents

  async function fetchDocuments() {
    const resp = await api("GET", "/v1/documents?limit=500");
    return (await resp.json()).items;
  }

  async function refreshDocuments() {
    try {
      renderDocuments(await fetchDocuments());
    } catch (err) {
      report(err);
    }
  }

  function renderDocuments(docs) {
    rows.clear();
    $("document-rows").replaceChildren();
    for (const doc of docs) upsertRow(doc, false);
    $("no-documents").hidden = rows.size > 0;
    for (const doc of docs) {
      if (doc.status === "queued" || doc.status === "processing") follow(doc.id);
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

  function upsertRow(doc, prepend = true) {
    let tr = rows.get(doc.id);
    const cells = [
      el("td", { text: doc.filename, title: `id ${doc.id}` }),
      el("td", {}, el("span", { className: `status-${doc.status}`, text: doc.status })),
      el("td", { text: progressText(doc) }),
      el("td", { className: "num", text: String(doc.chunks) }),
      el("td", { className: "num", text: String(doc.pages) }),
    ];
    const del = el("button", {
      type: "button", text: "Delete", "aria-label": `Delete ${doc.filename}`,
    });
    del.addEventListener("click", () => deleteDocument(doc, del));
    cells.push(el("td", {}, del));
    if (!tr) {
      tr = el("tr");
      rows.set(doc.id, tr);
      if (prepend) $("document-rows").prepend(tr);
      else $("document-rows").append(tr);
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

  async function deleteDocument(doc, button) {
    const question = `Delete "${doc.filename}"? Its file, passages and vectors are erased.`;
    if (!window.confirm(question)) return;
    button.disabled = true;
    try {
      await api("DELETE", docPath(doc.id));
      tracked.get(doc.id)?.ctl.abort();
      removeRow(doc.id);
      announce(`Deleted ${doc.filename}.`);
    } catch (err) {
      button.disabled = false;
      if (err instanceof ApiError && err.status === 404) removeRow(doc.id);
      report(err);
    }
  }

  // ------------------------------------------------------------ ingest progress

  // Follows one document until it is ready or failed: the live event stream when the server
  // has it, otherwise (or when it ends early) polling GET /v1/documents/{id} every second.
  async function follow(id, onUpdate = () => {}) {
    const already = tracked.get(id);
    if (already) {
      already.listeners.push(onUpdate); // an upload of a document the list follows already
      return null;
    }
    const ctl = new AbortController();
    const listeners = [onUpdate];
    tracked.set(id, { ctl, listeners });
    live.add(ctl);
    const update = (doc) => {
      if (ctl.signal.aborted) return; // signed out, or deleted meanwhile
      upsertRow(doc);
      for (const listener of listeners) listener(doc);
    };
    try {
      return (await followEvents(id, update, ctl.signal)) || (await poll(id, update, ctl.signal));
    } catch (err) {
      report(err);
      return null;
    } finally {
      live.delete(ctl);
      tracked.delete(id);
    }
  }

  async function followEvents(id, update, signal) {
    let resp;
    try {
      resp = await fetch(`${docPath(id)}/events`, {
        headers: authHeaders({ Accept: "text/event-stream" }), signal, cache: "no-store",
      });
    } catch (err) {
      if (signal.aborted) throw err;
      return null; // polling will tell whether the server is there
    }
    if (resp.status === 401) throw unauthorized();
    const type = resp.headers.get("content-type") || "";
    if (!resp.ok || !type.startsWith("text/event-stream") || !resp.body) {
      // 404 (no such route on this server, or no such document): polling decides which
      resp.body?.cancel().catch(() => {});
      return null;
    }
    for await (const ev of readEvents(resp.body)) {
      if (ev.event === "progress" || ev.event === "done") {
        const doc = JSON.parse(ev.data);
        update(doc);
        if (ev.event === "done") return doc;
      } else if (ev.event === "error") {
        const p = JSON.parse(ev.data);
        throw new ApiError(p.status, problemDetail(p.status, "", p));
      }
    }
    return null; // the stream ended before "done": poll for the rest
  }

  async function poll(id, update, signal) {
    for (;;) {
      const doc = await (await api("GET", docPath(id), undefined, signal)).json();
      update(doc);
      if (doc.status === "ready" || doc.status === "failed") return doc;
      await sleep(POLL_MS, signal);
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
      follow(body.id, (doc) => {
        const p = doc.progress || {};
        if (doc.status === "ready" || doc.status === "failed") {
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

  // ------------------------------------------------------------ questions

  async function ask(question) {
    showMessage("");
    $("ask-button").disabled = true;
    $("answer").hidden = false;
    $("answer-draft").hidden = true;
    $("answer-text").className = "";
    $("answer-text").textContent = "Looking through your documents…";
    $("citations").replaceChildren();
    $("citations-title").hidden = true;
    try {
      let result = streamingAsk ? await askStreaming(question) : null;
      if (result === null) result = await (await api("POST", "/v1/ask", { question })).json();
      renderAnswer(result);
    } catch (err) {
      $("answer").hidden = true;
      report(err);
    } finally {
      $("ask-button").disabled = false;
    }
  }

  // The streaming form (`"stream": true`): shows the draft as it comes; the `final` event is
  // authoritative (the verified answer may differ from the draft). Returns null when this
  // server does not stream answers, so the caller asks the plain way.
  async function askStreaming(question) {
    const resp = await fetch("/v1/ask", {
      method: "POST",
      headers: authHeaders({ "Content-Type": "application/json", Accept: "text/event-stream" }),
      body: JSON.stringify({ question, stream: true }),
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
        return answerFromEvents(new Response(text).body);
      }
    }
    return answerFromEvents(resp.body);
  }

  async function answerFromEvents(body) {
    let draft = "";
    for await (const ev of readEvents(body)) {
      if (ev.event === "token") {
        draft += JSON.parse(ev.data).text || "";
        $("answer-draft").hidden = false;
        $("answer-draft").textContent = `Draft: ${draft}`;
      } else if (ev.event === "final") {
        return JSON.parse(ev.data);
      } else if (ev.event === "error") {
        const p = JSON.parse(ev.data);
        throw new ApiError(p.status, problemDetail(p.status, "", p));
      }
    }
    throw new ApiError(0, "the answer stream ended before the final answer; ask again");
  }

  function renderAnswer(result) {
    const text = $("answer-text");
    const list = $("citations");
    $("answer-draft").hidden = true;
    list.replaceChildren();
    text.replaceChildren();
    if (result.status !== "answered") {
      text.className = "not-found";
      text.textContent = "Not found in your documents.";
      $("citations-title").hidden = true;
      return;
    }
    text.className = "";
    const known = new Set(result.citations.map((c) => c.n));
    // "[1]" markers become buttons that open the cited passage
    for (const part of result.answer.split(/(\[\d+\])/)) {
      const n = /^\[(\d+)\]$/.exec(part);
      if (n && known.has(Number(n[1]))) text.append(citeButton(Number(n[1])));
      else if (part) text.append(part);
    }
    for (const c of result.citations) list.append(citationItem(c));
    $("citations-title").hidden = result.citations.length === 0;
    // an answer without markers still shows its sources; give them a way in from the text
    if (result.citations.length && !/\[\d+\]/.test(result.answer)) {
      for (const c of result.citations) text.append(" ", citeButton(c.n));
    }
  }

  function citeButton(n) {
    const button = el("button", {
      type: "button", className: "cite", text: `[${n}]`,
      "aria-label": `Show source ${n}`, "aria-controls": `citation-${n}`,
    });
    button.addEventListener("click", () => {
      const details = $(`citation-${n}`);
      if (!details) return;
      details.open = true;
      details.scrollIntoView({ block: "nearest" });
      details.querySelector("summary").focus();
    });
    return button;
  }

  function citationItem(c) {
    const page = c.page ? `, page ${c.page}` : "";
    const details = el("details", { id: `citation-${c.n}` },
      el("summary", { text: `[${c.n}] ${c.filename}${page}` }),
      el("blockquote", { className: "quote", text: c.quote }),
      el("p", {
        className: "meta",
        text: `${c.filename}${page}, characters ${c.start}–${c.end}, `
          + `score ${Number(c.score).toFixed(2)}`,
      }));
    return el("li", {}, details);
  }

  // ------------------------------------------------------------ wiring

  function start() {
    $("sign-in-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const key = $("api-key").value.trim();
      if (key) signIn(key);
    });
    $("sign-out").addEventListener("click", () => signOut("Signed out."));
    $("refresh").addEventListener("click", refreshDocuments);
    $("file-input").addEventListener("change", (e) => {
      uploadFiles(Array.from(e.target.files));
      e.target.value = ""; // choosing the same file again uploads it again
    });
    setUpDropZone();
    $("ask-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const question = $("question").value.trim();
      if (question) ask(question);
    });
    const saved = sessionStorage.getItem(KEY_STORAGE);
    if (saved) signIn(saved);
    else $("api-key").focus();
  }

  start();
})();
