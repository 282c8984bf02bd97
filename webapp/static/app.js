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
const facetsBox = document.getElementById("facets");
const chips = document.getElementById("chips");
const itemView = document.getElementById("item-view");

const FACETS = { category: "Category", size: "Size", colour: "Colour", brand: "Brand", condition: "Condition", price: "Price" };
const CONDITIONS = { new_with_tags: "New with tags", like_new: "Like new", good: "Good", fair: "Fair", worn: "Worn" };
const FILTER_NAMES = ["category", "size", "colour", "brand", "condition", "price_min", "price_max"];

const PAGE = 24;
// An anonymous id for this tab, random and kept only while the tab lives: the search log groups
// a shopper's searches and clicks by it, and it says nothing about who they are.
const SESSION = (() => {
  try {
    const kept = sessionStorage.getItem("prethrift-session");
    if (kept) return kept;
    const made = crypto.randomUUID();
    sessionStorage.setItem("prethrift-session", made);
    return made;
  } catch {
    return crypto.randomUUID();
  }
})();
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

// Tells the service which result of which search was opened (for the console's demand figures).
function reportClick(searchId, itemId, position) {
  const body = JSON.stringify({ type: "click", search_id: searchId, item_id: itemId, position, session_id: SESSION });
  fetch("/api/events", { method: "POST", headers: { "Content-Type": "application/json" }, body, keepalive: true })
    .catch(() => {});
}

function card(item, searchId = null, position = null) {
  const el = document.createElement("article");
  el.className = "card";
  el.dataset.id = item.id;
  const img = document.createElement("img");
  img.src = item.image_url;
  img.alt = item.title;
  img.loading = "lazy";
  el.addEventListener("click", () => {
    if (searchId) reportClick(searchId, item.id, position);
    openItem(item.id).catch((e) => setStatus(String(e), true));
  });
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

function render(items, append, searchId = null) {
  if (!append) results.replaceChildren();
  for (const item of items) results.append(card(item, searchId, results.children.length));
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
  out.set("facets", "all");
  out.set("session_id", SESSION);
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
      render(page.items, append, page.search_id);
      if (page.stage === "final") {
        if (!append) {
          renderFacets(page.facets || {});
          renderChips(page.interpreted);
        }
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

function filterInput(name) {
  return form.ownerDocument.querySelector(`input[type=hidden][name=${name}]`);
}

function label(name, value) {
  if (name === "condition") return CONDITIONS[value] || value;
  if (name === "price_min") return `From ${value}`;
  if (name === "price_max") return `Up to ${value}`;
  return value;
}

// A chip names its field: "Size: M" says more than "M".
function chipText(name, value) {
  return name.startsWith("price_") ? label(name, value) : `${FACETS[name]}: ${label(name, value)}`;
}

function search() {
  lastParams = params(0);
  streamSearch(lastParams, false).catch((e) => setStatus(String(e), true));
}

// Facet lists with counts: choosing a value filters by it; choosing it again lets it go.
function renderFacets(facets) {
  facetsBox.replaceChildren();
  for (const [name, title] of Object.entries(FACETS)) {
    const values = facets[name];
    if (!values || values.length === 0) continue;
    const section = document.createElement("section");
    section.dataset.facet = name;
    const heading = document.createElement("h3");
    heading.textContent = title;
    const list = document.createElement("ul");
    for (const entry of values) {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      const text = document.createElement("span");
      text.className = "value";
      const count = document.createElement("span");
      count.className = "count";
      count.textContent = String(entry.count);
      if (name === "price") {
        text.textContent = entry.max === null ? `${entry.min}+` : `${entry.min} – ${entry.max}`;
        const pressed = filterInput("price_min").value === entry.min;
        button.setAttribute("aria-pressed", String(pressed));
        button.addEventListener("click", () => {
          filterInput("price_min").value = pressed ? "" : entry.min;
          filterInput("price_max").value = pressed || entry.max === null ? "" : (Number(entry.max) - 0.01).toFixed(2);
          search();
        });
      } else {
        text.textContent = label(name, entry.value);
        const input = filterInput(name);
        const pressed = input.value.toLowerCase() === String(entry.value).toLowerCase();
        button.setAttribute("aria-pressed", String(pressed));
        button.addEventListener("click", () => {
          input.value = pressed ? "" : entry.value;
          search();
        });
      }
      button.append(text, count);
      li.append(button);
      list.append(li);
    }
    section.append(heading, list);
    facetsBox.append(section);
  }
}

// Every active filter is a chip that removes it: those chosen here, and those read from the words.
function renderChips(interpreted) {
  chips.replaceChildren();
  for (const name of FILTER_NAMES) {
    const input = filterInput(name);
    if (!input.value) continue;
    chips.append(chip(chipText(name, input.value), false, () => {
      input.value = "";
      search();
    }));
  }
  if (!interpreted) return;
  for (const [name, value] of Object.entries(interpreted.filters)) {
    chips.append(chip(chipText(name, value), true, () => {
      // The words that said it go; the other constraints read from them stay, as filters.
      input.value = interpreted.q;
      for (const [other, kept] of Object.entries(interpreted.filters)) {
        if (other !== name) filterInput(other).value = kept;
      }
      search();
    }));
  }
}

function chip(text, parsed, remove) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = parsed ? "chip parsed" : "chip";
  button.title = parsed ? "Read from your words; click to drop it" : "Click to drop this filter";
  const name = document.createElement("span");
  name.textContent = text;
  const x = document.createElement("span");
  x.className = "x";
  x.textContent = "×";
  button.append(name, x);
  button.addEventListener("click", remove);
  return button;
}

// The item view: the listing in full, and more that look like it.
// Every photo of the item as a thumbnail (the cover first); choosing one shows it large.
function showGallery(item) {
  const gallery = document.getElementById("item-gallery");
  gallery.replaceChildren();
  const photos = item.photos || [];
  if (photos.length < 2) return;
  for (const photo of photos) {
    const button = document.createElement("button");
    button.type = "button";
    button.setAttribute("aria-label", `Photo ${photo.position} of ${photos.length}`);
    const img = document.createElement("img");
    img.src = photo.image_url;
    img.alt = "";
    img.loading = "lazy";
    button.append(img);
    button.addEventListener("click", () => {
      document.getElementById("item-image").src = photo.image_url;
    });
    gallery.append(button);
  }
}

async function openItem(id) {
  const [itemResponse, similarResponse] = await Promise.all([
    fetch(`/api/items/${id}`),
    fetch(`/api/items/${id}/similar?limit=8`),
  ]);
  if (!itemResponse.ok) {
    setStatus(await errorText(itemResponse), true);
    return;
  }
  const item = await itemResponse.json();
  document.getElementById("item-image").src = item.image_url;
  document.getElementById("item-image").alt = item.title;
  showGallery(item);
  document.getElementById("item-title").textContent = item.title;
  document.getElementById("item-price").textContent = money(item);
  document.getElementById("item-description").textContent = item.description;
  const fields = document.getElementById("item-fields");
  fields.replaceChildren();
  for (const [name, title] of Object.entries(FACETS)) {
    if (name === "price" || !item[name]) continue;
    const dt = document.createElement("dt");
    dt.textContent = title;
    const dd = document.createElement("dd");
    dd.textContent = label(name, item[name]);
    fields.append(dt, dd);
  }
  const similar = document.getElementById("item-similar");
  similar.replaceChildren();
  if (similarResponse.ok) {
    for (const hit of (await similarResponse.json()).items) similar.append(card(hit));
  }
  if (!itemView.open) itemView.showModal();
  itemView.scrollTop = 0;
}

document.getElementById("item-close").addEventListener("click", () => itemView.close());

form.addEventListener("submit", (event) => {
  event.preventDefault();
  // Suggestions still on their way are for the words just submitted: they must not reopen the box.
  seq += 1;
  suggestBox.hidden = true;
  search();
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
  const response = await fetch(`/api/search/image?limit=${PAGE}&session_id=${SESSION}`, { method: "POST", body });
  if (!response.ok) {
    setStatus(await errorText(response), true);
    return;
  }
  const page = await response.json();
  render(page.items, false, page.search_id);
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

// A link with q and filters (the console's "reproduce this search") runs that search on arrival.
(() => {
  const given = new URLSearchParams(location.search);
  let any = false;
  if (given.get("q")) {
    input.value = given.get("q");
    any = true;
  }
  for (const name of FILTER_NAMES) {
    if (given.get(name)) {
      filterInput(name).value = given.get(name);
      any = true;
    }
  }
  if (any) search();
})();
