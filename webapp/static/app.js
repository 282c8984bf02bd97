// Prethrift search page: live suggestions over a WebSocket, results streamed as NDJSON.
"use strict";

const form = document.getElementById("search-form");
const input = document.getElementById("q");
const suggestBox = document.getElementById("suggest");
const suggestQueries = document.getElementById("suggest-queries");
const suggestItems = document.getElementById("suggest-items");
const results = document.getElementById("results");
const statusLine = document.getElementById("status");
const more = document.getElementById("more");
const photo = document.getElementById("photo");

const PAGE = 24;
let nextOffset = null;
let lastParams = null;
let searchToken = 0;

function setStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

function money(item) {
  const amount = Number(item.price);
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency: item.currency }).format(amount);
  } catch {
    return `${item.price} ${item.currency}`;
  }
}

function card(item) {
  const el = document.createElement("article");
  el.className = "card";
  el.dataset.id = item.id;
  const img = document.createElement("img");
  img.src = item.image_url;
  img.alt = item.title;
  img.loading = "lazy";
  const body = document.createElement("div");
  body.className = "body";
  const title = document.createElement("div");
  title.className = "title";
  title.textContent = item.title;
  const meta = document.createElement("div");
  meta.className = "meta";
  const size = document.createElement("span");
  size.className = "size";
  size.textContent = item.size ? `Size ${item.size}` : "";
  const price = document.createElement("span");
  price.className = "price";
  price.textContent = money(item);
  meta.append(size, price);
  body.append(title, meta);
  if (item.score !== null && item.score !== undefined) {
    const score = document.createElement("div");
    score.className = "score";
    score.textContent = `match ${item.score.toFixed(3)}`;
    body.append(score);
  }
  el.append(img, body);
  return el;
}

function render(items, append) {
  if (!append) results.replaceChildren();
  for (const item of items) results.append(card(item));
}

function params(offset) {
  const data = new FormData(form);
  const out = new URLSearchParams();
  for (const [key, value] of data.entries()) {
    if (typeof value === "string" && value.trim() !== "") out.set(key, value.trim());
  }
  if (out.get("sort") === "relevance") out.delete("sort");
  if (out.get("mode") === "hybrid") out.delete("mode");
  out.set("limit", String(PAGE));
  out.set("offset", String(offset));
  return out;
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body.error.message;
  } catch {
    return `The server answered ${response.status}.`;
  }
}

// Reads newline-delimited JSON as it arrives: keyword hits first, then the final ranking.
async function streamSearch(query, append) {
  const token = ++searchToken;
  setStatus("Searching…");
  const response = await fetch(`/api/search/stream?${query}`);
  if (!response.ok) {
    setStatus(await errorText(response), true);
    return;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (token !== searchToken) return; // a newer search started
    buffered += decoder.decode(value || new Uint8Array(), { stream: !done });
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline).trim();
      buffered = buffered.slice(newline + 1);
      if (!line) continue;
      const page = JSON.parse(line);
      render(page.items, append);
      if (page.stage === "final") {
        nextOffset = page.next_offset;
        more.hidden = nextOffset === null;
        const shown = results.children.length;
        setStatus(shown ? `${shown} item${shown === 1 ? "" : "s"}` : "Nothing matches yet: try other words or fewer filters.");
      } else {
        setStatus("Refining…");
      }
    }
    if (done) return;
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  suggestBox.hidden = true;
  lastParams = params(0);
  streamSearch(lastParams, false).catch((e) => setStatus(String(e), true));
});

more.addEventListener("click", () => {
  if (nextOffset === null || lastParams === null) return;
  lastParams.set("offset", String(nextOffset));
  streamSearch(lastParams, true).catch((e) => setStatus(String(e), true));
});

photo.addEventListener("change", async () => {
  const file = photo.files[0];
  if (!file) return;
  searchToken++;
  setStatus("Looking for similar items…");
  const body = new FormData();
  body.append("image", file);
  const response = await fetch(`/api/search/image?limit=${PAGE}`, { method: "POST", body });
  if (!response.ok) {
    setStatus(await errorText(response), true);
    return;
  }
  const page = await response.json();
  render(page.items, false);
  more.hidden = true;
  setStatus(`${page.items.length} look-alike item${page.items.length === 1 ? "" : "s"}`);
});

// Live suggestions: every keystroke sends {q, seq}; only the answer to the newest seq is shown.
let socket = null;
let seq = 0;

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws/suggest`);
  socket.addEventListener("message", (event) => {
    const answer = JSON.parse(event.data);
    if (answer.error || answer.seq !== seq) return;
    showSuggestions(answer);
  });
  socket.addEventListener("close", () => setTimeout(connect, 1000));
}

function showSuggestions(answer) {
  suggestQueries.replaceChildren();
  for (const text of answer.suggestions) {
    const li = document.createElement("li");
    li.textContent = text;
    li.addEventListener("mousedown", (event) => {
      event.preventDefault();
      input.value = text;
      form.requestSubmit();
    });
    suggestQueries.append(li);
  }
  suggestItems.replaceChildren();
  for (const item of answer.items) {
    const a = document.createElement("a");
    a.href = item.image_url;
    a.target = "_blank";
    const img = document.createElement("img");
    img.src = item.image_url;
    img.alt = item.title;
    const caption = document.createElement("div");
    caption.textContent = `${item.title} · ${money(item)}`;
    a.append(img, caption);
    suggestItems.append(a);
  }
  suggestBox.hidden = answer.suggestions.length === 0 && answer.items.length === 0;
}

input.addEventListener("input", () => {
  seq += 1;
  if (!input.value.trim()) {
    suggestBox.hidden = true;
    return;
  }
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ q: input.value, seq }));
  }
});
input.addEventListener("blur", () => setTimeout(() => (suggestBox.hidden = true), 150));

connect();
