// The chat page: a client of the server's public API and nothing else (the calls, in order, are in docs/chat-page.md).
// Everything the model or a source writes is put in the DOM as text (textContent), never as markup; the page's
// Content-Security-Policy allows no inline script besides.
"use strict";

(() => {
  const KEY = "monolith.apiKey"; // sessionStorage (this tab), localStorage too when "remember" is ticked
  const CHATS = "monolith.chats";
  const CURRENT = "monolith.currentChat";
  const SETTINGS = "monolith.settings";
  const MAX_CHATS = 50;
  const READY_POLL_MS = 2000;

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $("status"), notice: $("notice"), log: $("log"), history: $("history"), model: $("model-name"),
    twinPicker: $("twin-picker"), twin: $("twin"),
    composer: $("composer"), message: $("message"), send: $("send"), sources: $("use-sources"),
    keyForm: $("key-form"), key: $("api-key"), remember: $("remember-key"), newChat: $("new-chat"),
    system: $("system"), temperature: $("temperature"), maxTokens: $("max-tokens"), reset: $("reset-settings"),
  };

  const state = {
    chats: readJson(localStorage, CHATS, []),
    current: readJson(localStorage, CURRENT, null),
    model: null,
    ready: false,
    streaming: null, // the AbortController of the answer that streams
    pending: null, // a message that waits for a key
  };

  // ---- storage: a convenience, so a full or disabled storage never breaks the page
  function readJson(storage, key, fallback) {
    try {
      const text = storage.getItem(key);
      return text ? JSON.parse(text) : fallback;
    } catch {
      return fallback;
    }
  }
  function writeJson(storage, key, value) {
    try {
      storage.setItem(key, JSON.stringify(value));
    } catch {
      /* quota or privacy mode: history stays in memory */
    }
  }
  function saveChats() {
    state.chats = state.chats.slice(-MAX_CHATS);
    writeJson(localStorage, CHATS, state.chats);
    writeJson(localStorage, CURRENT, state.current);
  }

  function apiKey() {
    return sessionStorage.getItem(KEY) || localStorage.getItem(KEY) || "";
  }
  function keepKey(key, remember) {
    sessionStorage.setItem(KEY, key);
    if (remember) localStorage.setItem(KEY, key);
    else localStorage.removeItem(KEY);
  }
  function headers() {
    const h = { "Content-Type": "application/json" };
    const key = apiKey();
    if (key) h.Authorization = `Bearer ${key}`;
    return h;
  }

  // ---- settings
  function readSettings() {
    const s = readJson(localStorage, SETTINGS, {});
    ui.system.value = s.system || "";
    ui.temperature.value = s.temperature ?? "";
    ui.maxTokens.value = s.maxTokens ?? "";
    ui.sources.checked = Boolean(s.useSources);
  }
  function writeSettings() {
    writeJson(localStorage, SETTINGS, {
      system: ui.system.value, temperature: ui.temperature.value, maxTokens: ui.maxTokens.value,
      useSources: ui.sources.checked,
    });
  }
  function sampling() {
    const out = {};
    if (ui.temperature.value !== "") out.temperature = Number(ui.temperature.value);
    if (ui.maxTokens.value !== "") out.max_tokens = Number(ui.maxTokens.value);
    return out;
  }

  // ---- conversations
  function currentChat() {
    let chat = state.chats.find((c) => c.id === state.current);
    if (!chat) {
      chat = { id: `chat-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`, title: "New chat", messages: [] };
      state.chats.push(chat);
      state.current = chat.id;
    }
    return chat;
  }
  function newChat() {
    if (state.streaming) return;
    state.current = null;
    currentChat();
    saveChats();
    render();
    ui.message.focus();
  }

  function render() {
    renderHistory();
    ui.log.replaceChildren(...currentChat().messages.map(messageElement));
    ui.log.scrollTop = ui.log.scrollHeight;
  }
  function renderHistory() {
    const items = [...state.chats].reverse().map((chat) => {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = chat.title;
      button.title = chat.title;
      if (chat.id === state.current) button.setAttribute("aria-current", "true");
      button.addEventListener("click", () => {
        if (state.streaming) return;
        state.current = chat.id;
        saveChats();
        render();
      });
      li.append(button);
      return li;
    });
    ui.history.replaceChildren(...items);
  }

  function messageElement(message) {
    const article = document.createElement("article");
    article.dataset.author = message.role;
    const text = document.createElement("p");
    text.className = "text";
    text.textContent = message.content;
    article.append(text);
    if (message.role === "assistant") {
      article.append(...assistantExtras(message));
    }
    return article;
  }

  function assistantExtras(message) {
    const parts = [];
    if (message.sources) parts.push(sourcesList(message.sources));
    const meta = document.createElement("p");
    meta.className = "meta";
    const facts = [];
    if (message.stopped) facts.push("stopped");
    if (message.usage) {
      facts.push(`${message.usage.prompt_tokens} prompt + ${message.usage.completion_tokens} completion tokens`);
    }
    if (message.firstTokenS != null) facts.push(`first token ${message.firstTokenS.toFixed(2)} s`);
    if (message.tokensPerS != null) facts.push(`${message.tokensPerS.toFixed(1)} tokens/s`);
    for (const fact of facts) {
      const span = document.createElement("span");
      span.textContent = fact;
      meta.append(span);
    }
    if (message.error) {
      const error = document.createElement("span");
      error.className = "error";
      error.textContent = message.error;
      meta.append(error);
    }
    if (message.content) {
      const copy = document.createElement("button");
      copy.type = "button";
      copy.textContent = "Copy";
      copy.addEventListener("click", () => copyText(message.content, copy));
      meta.append(copy);
    }
    parts.push(meta);
    return parts;
  }

  function safeLink(link) {
    try {
      const url = new URL(link);
      return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
    } catch {
      return null;
    }
  }

  function sourcesList(sources) {
    const list = document.createElement("ol");
    list.className = "sources";
    list.setAttribute("aria-label", "Sources");
    for (const source of sources) {
      const li = document.createElement("li");
      const label = `${source.author_full_name} · ${source.platform}`;
      const href = safeLink(source.link);
      const anchor = document.createElement(href ? "a" : "span");
      anchor.textContent = label;
      if (href) {
        anchor.href = href;
        anchor.target = "_blank";
        anchor.rel = "noopener noreferrer";
      }
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = `score ${Number(source.score).toFixed(2)}`;
      const snippet = document.createElement("details");
      const summary = document.createElement("summary");
      summary.textContent = "Snippet";
      const body = document.createElement("p");
      body.textContent = source.content;
      snippet.append(summary, body);
      li.append(anchor, score, snippet);
      list.append(li);
    }
    return list;
  }

  async function copyText(text, button) {
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch {
      button.textContent = "Copy failed";
    }
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  }

  // ---- status, notices, keys
  function setStatus(text, loading = false) {
    ui.status.textContent = text;
    ui.status.classList.toggle("loading", loading);
  }
  function notify(text) {
    ui.notice.textContent = text;
    ui.notice.hidden = !text;
  }
  function askForKey() {
    ui.keyForm.hidden = false;
    setStatus("Waiting for an API key");
    ui.key.focus();
  }
  function setSending(streaming) {
    ui.send.textContent = streaming ? "Stop" : "Send";
    ui.send.disabled = !streaming && !state.ready;
    ui.newChat.disabled = streaming;
  }

  class ApiError extends Error {
    constructor(status, message, retryAfter) {
      super(message);
      this.status = status;
      this.retryAfter = retryAfter;
    }
  }
  async function apiError(response) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body?.error?.message) message = body.error.message;
    } catch {
      /* not JSON: keep the status line */
    }
    return new ApiError(response.status, message, response.headers.get("Retry-After"));
  }

  // ---- readiness and the model
  const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

  async function waitUntilReady() {
    state.ready = false;
    setSending(false);
    for (;;) {
      let body = null;
      let status = 0;
      try {
        const response = await fetch("/health/ready", { cache: "no-store" });
        status = response.status;
        body = await response.json();
      } catch {
        setStatus("Cannot reach the server; retrying…", true);
        await sleep(READY_POLL_MS);
        continue;
      }
      if (status === 200) break;
      if (body?.status === "draining") setStatus("The server is shutting down; retrying…", true);
      else if (body?.status === "failed") setStatus(`The twin failed to start: ${body.detail}`);
      else setStatus(`Loading the twin (${body?.status || status}: ${body?.detail || "starting"})…`, true);
      await sleep(READY_POLL_MS);
    }
    state.ready = true;
    setSending(false);
    setStatus("Reading the models…", true); // "Ready" once the model to talk to is known (loadModel)
  }

  async function loadModel() {
    const response = await fetch("/v1/models", { headers: headers() });
    if (response.status === 401) {
      askForKey();
      return false;
    }
    if (!response.ok) throw await apiError(response);
    const models = (await response.json()).data;
    // The base and each twin (a LoRA on it): the models that generate, less their "-rag" aliases (the
    // "use my sources" box asks for RAG).
    const twins = models.filter((m) => m.max_model_len && !models.some((o) => o !== m && `${o.id}-rag` === m.id));
    const chosen = twins.find((m) => m.id === state.model) || twins[0] || models[0];
    chooseModel(chosen.id);
    ui.twin.replaceChildren(...twins.map((m) => new Option(m.parent ? m.id : `${m.id} (base)`, m.id)));
    ui.twin.value = chosen.id;
    ui.twinPicker.hidden = twins.length < 2;
    ui.keyForm.hidden = true;
    setStatus("Ready");
    return true;
  }

  function chooseModel(id) {
    state.model = id;
    ui.model.textContent = `· ${id}`;
  }

  async function connect() {
    await waitUntilReady();
    try {
      return await loadModel();
    } catch (error) {
      notify(error.message);
      return false;
    }
  }

  // ---- sending and streaming
  async function* events(response) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
        if (!data) continue;
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  }

  function requestFor(chat, useSources) {
    const question = chat.messages[chat.messages.length - 1].content;
    if (useSources) {
      return ["/rag", { query: question, model: state.model, stream: true, ...sampling() }];
    }
    const history = chat.messages
      .filter((m) => m.content && !m.error)
      .map((m) => ({ role: m.role, content: m.content }));
    const system = ui.system.value.trim();
    const messages = system ? [{ role: "system", content: system }, ...history] : history;
    const body = {
      model: state.model, messages, stream: true, stream_options: { include_usage: true }, ...sampling(),
    };
    return ["/v1/chat/completions", body];
  }

  async function send(text) {
    notify("");
    if (!state.model && !(await connect())) {
      state.pending = text;
      ui.message.value = text;
      return;
    }
    const chat = currentChat();
    if (!chat.messages.length) chat.title = text.slice(0, 60);
    chat.messages.push({ role: "user", content: text });
    const answer = { role: "assistant", content: "" };
    const useSources = ui.sources.checked;
    const [path, body] = requestFor(chat, useSources);
    chat.messages.push(answer);
    render();
    const article = ui.log.lastElementChild;
    const textNode = article.querySelector(".text");
    article.setAttribute("aria-busy", "true");
    const controller = new AbortController();
    state.streaming = controller;
    setSending(true);
    const started = performance.now();
    let firstAt = null;
    let refused = null;
    try {
      const response = await fetch(path, {
        method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal,
      });
      if (!response.ok) throw await apiError(response);
      for await (const event of events(response)) {
        if (event.error) throw new ApiError(0, event.error.message || "the answer failed");
        const delta = useSources
          ? (event.type === "delta" ? event.text : "")
          : (event.choices?.[0]?.delta?.content || "");
        if (delta) {
          firstAt ??= performance.now();
          answer.content += delta;
          textNode.textContent = answer.content;
          ui.log.scrollTop = ui.log.scrollHeight;
        }
        if (event.usage) answer.usage = event.usage;
        if (useSources && event.type === "final") answer.sources = event.sources;
      }
    } catch (error) {
      if (error.name === "AbortError") answer.stopped = true;
      else if (error instanceof ApiError && error.status) refused = error;
      else answer.error = error.message;
    } finally {
      state.streaming = null;
      article.removeAttribute("aria-busy");
      setSending(false);
    }
    const ended = performance.now();
    if (firstAt !== null) {
      answer.firstTokenS = (firstAt - started) / 1000;
      const generated = answer.usage?.completion_tokens;
      if (generated && ended > firstAt) answer.tokensPerS = (generated - 1) / ((ended - firstAt) / 1000);
    }
    if (refused) {
      // The server took nothing: the question goes back into the box, to send again.
      chat.messages.splice(-2, 2);
      ui.message.value = text;
      await handleRefusal(refused, text);
    }
    saveChats();
    render();
  }

  async function handleRefusal(error, text) {
    if (error.status === 401) {
      state.pending = text;
      notify("");
      askForKey();
    } else if (error.status === 429) {
      const wait = error.retryAfter ? ` Try again in ${error.retryAfter} s.` : "";
      notify(`The server is busy (429).${wait}`);
    } else if (error.status === 503) {
      const ready = await fetch("/health/ready", { cache: "no-store" }).then((r) => r.status).catch(() => 0);
      if (ready === 200) notify(error.message);
      else connect();
    } else {
      notify(`${error.message} (${error.status})`);
    }
  }

  // ---- events
  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    if (state.streaming) {
      state.streaming.abort();
      return;
    }
    const text = ui.message.value.trim();
    if (!text || !state.ready) return;
    ui.message.value = "";
    send(text);
  });
  ui.message.addEventListener("keydown", (event) => {
    // Enter sends; Shift+Enter is a newline; Enter that confirms an IME composition does nothing here.
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
    event.preventDefault();
    if (!state.streaming) ui.composer.requestSubmit();
  });
  ui.keyForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = ui.key.value.trim();
    if (!key) return;
    keepKey(key, ui.remember.checked);
    ui.key.value = "";
    if (!(await loadModel().catch((error) => { notify(error.message); return false; }))) {
      notify("That key was refused.");
      return;
    }
    notify("");
    const pending = state.pending;
    state.pending = null;
    if (pending && ui.message.value.trim() === pending) {
      ui.message.value = "";
      send(pending);
    }
  });
  ui.newChat.addEventListener("click", newChat);
  ui.twin.addEventListener("change", () => chooseModel(ui.twin.value));
  for (const input of [ui.system, ui.temperature, ui.maxTokens, ui.sources]) {
    input.addEventListener("change", writeSettings);
  }
  ui.reset.addEventListener("click", () => {
    localStorage.removeItem(SETTINGS);
    readSettings();
  });

  readSettings();
  render();
  connect();
})();
