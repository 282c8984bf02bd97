// <prethrift-search>: Prethrift's search as one element any storefront can drop in.
//   <script src="https://API/widget.js" defer></script>
//   <prethrift-search></prethrift-search>
// No framework; everything lives in the element's shadow root, so the shop's CSS and ours
// never meet. Theme it with the --prethrift-* custom properties (they inherit into the shadow).
(() => {
  "use strict";
  if (customElements.get("prethrift-search")) return;
  // By default the API is wherever this script was loaded from.
  const SCRIPT_ORIGIN = document.currentScript ? new URL(document.currentScript.src, location.href).origin : location.origin;
  const FACETS = { category: "Category", size: "Size", colour: "Colour", brand: "Brand", condition: "Condition", price: "Price" };
  const FILTERS = ["category", "size", "colour", "brand", "condition", "price_min", "price_max"];
  const CONDITIONS = { new_with_tags: "New with tags", like_new: "Like new", good: "Good", fair: "Fair", worn: "Worn" };
  const SORTS = { "": "Best match", price_asc: "Price, low to high", price_desc: "Price, high to low", newest: "Newest" };
  const CSS = `
:host{--a:var(--prethrift-accent,#0b57d0);--f:var(--prethrift-text,#1d1d1f);--m:var(--prethrift-muted,#555);
--b:var(--prethrift-background,#fff);--l:var(--prethrift-border,#c8c8cc);--r:var(--prethrift-radius,8px);
display:block;font:var(--prethrift-font,15px/1.4 system-ui,sans-serif);color:var(--f);background:var(--b)}
*{box-sizing:border-box}[hidden]{display:none!important}
button,input,select{font:inherit;color:inherit}
select{padding:8px;border:1px solid var(--l);border-radius:var(--r);background:var(--b)}
.bar{display:flex;gap:8px;flex-wrap:wrap;align-items:center}
.box{position:relative;flex:1 1 16em}
.box input{width:100%;padding:9px 12px;border:1px solid var(--l);border-radius:var(--r);background:var(--b)}
button{cursor:pointer;border:1px solid var(--l);border-radius:var(--r);background:var(--b);padding:8px 12px}
button.go{background:var(--a);border-color:var(--a);color:var(--prethrift-on-accent,#fff)}
:focus-visible{outline:3px solid var(--a);outline-offset:2px}
[role=listbox]{position:absolute;z-index:10;left:0;right:0;top:100%;margin:4px 0 0;padding:4px;list-style:none;
background:var(--b);border:1px solid var(--l);border-radius:var(--r);box-shadow:0 6px 20px #0002}
[role=option]{display:flex;gap:8px;align-items:center;padding:6px 8px;border-radius:calc(var(--r)/2);cursor:pointer}
[role=option] img{width:32px;height:32px;object-fit:cover;border-radius:4px}
[role=option][aria-selected=true]{background:var(--a);color:var(--prethrift-on-accent,#fff)}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
.chips{display:flex;gap:6px;flex-wrap:wrap;margin:8px 0}
.chip{border-radius:99px;padding:2px 10px}
.main{display:grid;grid-template-columns:minmax(0,12em) 1fr;gap:16px}
@media (max-width:640px){.main{grid-template-columns:1fr}}
.facets h3{font-size:1em;margin:10px 0 4px}.facets ul{list-style:none;margin:0;padding:0}
.facets button{border:0;padding:2px 4px;display:flex;gap:6px;width:100%;text-align:left}
.facets button[aria-pressed=true]{font-weight:700;color:var(--a)}
.count{color:var(--m);margin-left:auto}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(var(--prethrift-card-width,10em),1fr));gap:12px;
list-style:none;margin:0;padding:0}
.card{display:block;width:100%;padding:0;text-align:left;overflow:hidden}
.card img{display:block;width:100%;aspect-ratio:4/5;object-fit:cover;background:var(--l)}
.card span{display:block;padding:2px 8px}.card .t{font-weight:600;padding-top:6px}.card .p{padding-bottom:8px}
.status{color:var(--m);min-height:1.4em}.status.err{color:#b3261e}
dialog{border:0;border-radius:var(--r);padding:16px;max-width:min(56em,94vw);color:var(--f);background:var(--b)}
dialog::backdrop{background:#0008}
.item{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:16px}
@media (max-width:640px){.item{grid-template-columns:1fr}}
.shot{width:100%;aspect-ratio:4/5;object-fit:contain;background:var(--l);border-radius:var(--r)}
.thumbs{display:flex;gap:6px;flex-wrap:wrap;margin-top:6px}.thumbs button{padding:0}
.thumbs img{width:48px;height:60px;object-fit:cover;display:block}.thumbs [aria-current=true]{outline:2px solid var(--a)}
.close{float:right}dl{display:grid;grid-template-columns:auto 1fr;gap:2px 12px}dd{margin:0}`;

  const el = (tag, props = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key in node && !key.includes("-")) node[key] = value;
      else node.setAttribute(key, value);
    }
    node.append(...children);
    return node;
  };

  function money(item) {
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency: item.currency }).format(Number(item.price));
    } catch {
      return `${item.price} ${item.currency}`;
    }
  }

  // Anonymous and per tab: random, never derived from the shopper, gone when the tab closes.
  function sessionId() {
    const key = "prethrift-session";
    try {
      let id = sessionStorage.getItem(key);
      if (!id) sessionStorage.setItem(key, (id = newId()));
      return id;
    } catch {
      return (sessionId.memo ||= newId()); // storage blocked: one id for this page's life
    }
  }
  const newId = () =>
    crypto.randomUUID ? crypto.randomUUID() : Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");

  let instances = 0;

  class PrethriftSearch extends HTMLElement {
    static get observedAttributes() {
      return ["api-base", "page-size", "placeholder"];
    }

    constructor() {
      super();
      const n = ++instances;
      this.uid = `ps${n}`;
      this.filters = {};
      this.results = [];
      this.seq = 0;
      this.failures = 0;
      this.options = [];
      this.active = -1;
      const root = this.attachShadow({ mode: "open" });
      const style = new CSSStyleSheet();
      style.replaceSync(CSS); // a constructed sheet: no inline <style>, so a strict page CSP allows it
      root.adoptedStyleSheets = [style];
      const id = (name) => `${this.uid}-${name}`;
      this.input = el("input", {
        type: "search", id: id("q"), role: "combobox", autocomplete: "off", "aria-autocomplete": "list",
        "aria-expanded": "false", "aria-controls": id("list"), "aria-label": "Search second-hand clothes",
        oninput: () => this.typed(), onkeydown: (e) => this.key(e), onblur: () => setTimeout(() => this.closeList(), 150),
      });
      this.list = el("ul", { id: id("list"), role: "listbox", "aria-label": "Suggestions", hidden: true });
      this.photo = el("input", { type: "file", accept: "image/*", "aria-label": "Photo to search with", class: "sr", tabIndex: -1, onchange: () => this.byPhoto() });
      this.sort = el("select", { "aria-label": "Sort", onchange: () => this.search() },
        ...Object.entries(SORTS).map(([value, text]) => el("option", { value }, text)));
      this.form = el("form", { role: "search", class: "bar", onsubmit: (e) => { e.preventDefault(); this.submit(); } },
        el("div", { class: "box" }, this.input, this.list),
        el("button", { type: "submit", class: "go" }, "Search"),
        el("button", { type: "button", onclick: () => this.photo.click() }, "Search by photo"),
        this.photo, this.sort);
      this.chips = el("div", { class: "chips", role: "group", "aria-label": "Active filters" });
      this.facets = el("nav", { class: "facets", "aria-label": "Narrow results" });
      this.status = el("p", { class: "status", role: "status" });
      this.grid = el("ul", { class: "grid", "aria-label": "Results" });
      this.more = el("button", { type: "button", hidden: true, onclick: () => this.search(this.nextOffset) }, "More results");
      this.dialog = el("dialog", { "aria-labelledby": id("title") });
      root.append(this.form, this.chips, el("div", { class: "main" }, this.facets, el("div", {}, this.status, this.grid, this.more)), this.dialog);
    }

    get api() {
      return (this.getAttribute("api-base") || SCRIPT_ORIGIN).replace(/\/+$/, "");
    }

    get pageSize() {
      const size = parseInt(this.getAttribute("page-size") || "24", 10);
      return Math.min(100, Math.max(1, Number.isFinite(size) ? size : 24));
    }

    attributeChangedCallback(name) {
      if (name === "placeholder") this.input.placeholder = this.getAttribute("placeholder") || "";
      if (name === "api-base" && this.started) this.reconnect();
    }

    connectedCallback() {
      if (!this.hasAttribute("placeholder")) this.input.placeholder = "faded denim jacket, size M, under 40";
      this.started = true;
      this.reconnect();
    }

    disconnectedCallback() {
      clearTimeout(this.retry);
      const socket = this.socket;
      this.socket = null; // its close handler then leaves it closed
      if (socket) socket.close();
    }

    // Suggestions over a WebSocket. A socket that never opens (refused: this page's origin is not
    // allowed, or a proxy drops WebSockets) is retried twice, then the box works without it.
    reconnect() {
      this.disconnectedCallback();
      this.failures = 0;
      this.connect();
    }

    connect() {
      const url = new URL("/ws/suggest", this.api);
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      let opened = false;
      const socket = (this.socket = new WebSocket(url));
      socket.onopen = () => { opened = true; this.failures = 0; };
      socket.onmessage = (event) => {
        const answer = JSON.parse(event.data);
        if (!answer.error && answer.seq === this.seq) this.suggest(answer);
      };
      socket.onclose = () => {
        if (this.socket !== socket) return;
        this.socket = null;
        if (!opened && ++this.failures >= 3) return; // plain HTTP search from here on
        this.retry = setTimeout(() => this.connect(), opened ? 1000 : 1000 * this.failures);
      };
    }

    typed() {
      this.seq += 1;
      const q = this.input.value;
      if (!q.trim()) return this.closeList();
      if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify({ q, seq: this.seq }));
    }

    // The ARIA combobox pattern: focus stays in the box, aria-activedescendant names the option.
    suggest(answer) {
      this.options = [
        ...answer.suggestions.map((text) => ({ text, run: () => { this.input.value = text; this.submit(); } })),
        ...answer.items.map((item, i) => ({ item, text: `${item.title} · ${money(item)}`, run: () => this.pick(item, i, null) })),
      ];
      this.list.replaceChildren(...this.options.map((option, i) =>
        el("li", { role: "option", id: `${this.uid}-o${i}`, "aria-selected": "false", onmousedown: (e) => { e.preventDefault(); this.choose(i); } },
          ...(option.item ? [el("img", { src: option.item.image_url, alt: "" })] : []), el("span", {}, option.text))));
      this.active = -1;
      this.input.removeAttribute("aria-activedescendant");
      this.list.hidden = this.options.length === 0;
      this.input.setAttribute("aria-expanded", String(!this.list.hidden));
    }

    closeList() {
      this.list.hidden = true;
      this.active = -1;
      this.input.setAttribute("aria-expanded", "false");
      this.input.removeAttribute("aria-activedescendant");
    }

    key(event) {
      const open = !this.list.hidden && this.options.length > 0;
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        if (!open) return;
        event.preventDefault();
        const step = event.key === "ArrowDown" ? 1 : -1;
        const next = this.active + step;
        this.highlight(next < -1 ? this.options.length - 1 : next);
      } else if (event.key === "Enter" && open && this.active >= 0) {
        event.preventDefault();
        this.choose(this.active);
      } else if (event.key === "Escape" && open) {
        event.preventDefault();
        this.closeList();
      }
    }

    highlight(index) {
      // Past either end the highlight leaves the list (index -1): the box holds what was typed.
      this.active = index >= this.options.length ? -1 : index;
      this.list.querySelectorAll("[role=option]").forEach((li, i) => li.setAttribute("aria-selected", String(i === this.active)));
      if (this.active < 0) this.input.removeAttribute("aria-activedescendant");
      else {
        this.input.setAttribute("aria-activedescendant", `${this.uid}-o${this.active}`);
        this.list.children[this.active].scrollIntoView({ block: "nearest" });
      }
    }

    choose(index) {
      const option = this.options[index];
      this.closeList();
      if (option) option.run();
    }

    submit() {
      this.seq += 1; // answers still on their way must not reopen the list
      this.closeList();
      this.search();
    }

    params(offset) {
      const out = new URLSearchParams({ limit: String(this.pageSize), offset: String(offset), facets: "all", session_id: sessionId() });
      const q = this.input.value.trim();
      if (q) out.set("q", q);
      if (this.sort.value) out.set("sort", this.sort.value);
      for (const [name, value] of Object.entries(this.filters)) if (value) out.set(name, value);
      return out;
    }

    async call(path, init) {
      let response;
      try {
        response = await fetch(this.api + path, init);
      } catch {
        throw new Error("The search service cannot be reached from this page.");
      }
      const body = await response.json().catch(() => null);
      if (!response.ok) throw new Error(body?.error?.message || `The search service answered ${response.status}.`);
      return body;
    }

    say(text, error = false) {
      this.status.textContent = text;
      this.status.classList.toggle("err", error);
    }

    async search(offset = 0) {
      const token = (this.token = {});
      this.say("Searching…");
      try {
        const page = await this.call(`/api/search?${this.params(offset)}`);
        if (token !== this.token) return; // a newer search started
        this.show(page, offset > 0);
        if (offset === 0) {
          this.renderFacets(page.facets || {});
          this.renderChips(page.interpreted);
        }
      } catch (error) {
        if (token === this.token) this.say(error.message, true);
      }
    }

    async byPhoto() {
      const file = this.photo.files[0];
      if (!file) return;
      const token = (this.token = {});
      this.say("Looking for similar items…");
      const body = new FormData();
      body.append("image", file);
      this.photo.value = "";
      try {
        const page = await this.call(`/api/search/image?limit=${this.pageSize}&session_id=${sessionId()}`, { method: "POST", body });
        if (token !== this.token) return;
        this.facets.replaceChildren();
        this.chips.replaceChildren();
        this.show(page, false);
        this.more.hidden = true;
      } catch (error) {
        if (token === this.token) this.say(error.message, true);
      }
    }

    show(page, append) {
      const start = append ? this.results.length : 0;
      if (!append) this.results = [];
      this.searchId = page.search_id || null;
      this.results.push(...page.items);
      const cards = page.items.map((item, i) => el("li", {}, this.card(item, start + i, this.searchId)));
      if (append) this.grid.append(...cards);
      else this.grid.replaceChildren(...cards);
      this.nextOffset = page.next_offset;
      this.more.hidden = page.next_offset == null;
      const n = this.results.length;
      this.say(n ? `${n} item${n === 1 ? "" : "s"}` : "Nothing matches yet: try other words or fewer filters.");
    }

    card(item, position, searchId) {
      return el("button", { type: "button", class: "card", onclick: () => this.pick(item, position, searchId) },
        el("img", { src: item.image_url, alt: "", loading: "lazy" }),
        el("span", { class: "t" }, item.title),
        el("span", { class: "p" }, [item.size && `Size ${item.size}`, money(item)].filter(Boolean).join(" · ")));
    }

    // The shop hears of the pick (to open its own product page, by its own external_id); unless it
    // calls preventDefault(), the widget shows the item itself.
    async pick(hit, position, searchId) {
      if (searchId) {
        const event = { type: "click", search_id: searchId, item_id: hit.id, position, session_id: sessionId() };
        // keepalive: the report still goes out when the shop navigates away at once.
        fetch(`${this.api}/api/events`, { method: "POST", keepalive: true, headers: { "Content-Type": "application/json" }, body: JSON.stringify(event) }).catch(() => {});
      }
      // Results and previews carry no external_id: the item's own read does.
      const item = "external_id" in hit ? hit : await this.call(`/api/items/${hit.id}`).catch(() => null);
      const detail = { id: hit.id, external_id: item?.external_id ?? null, item: item || hit, position, search_id: searchId };
      const open = this.dispatchEvent(new CustomEvent("prethrift-pick", { detail, bubbles: true, composed: true, cancelable: true }));
      if (open) this.openItem(hit.id, item).catch((error) => this.say(error.message, true));
    }

    async openItem(id, known) {
      const [item, similar] = await Promise.all([
        known && known.photos ? known : this.call(`/api/items/${id}`),
        this.call(`/api/items/${id}/similar?limit=8`).catch(() => ({ items: [] })),
      ]);
      const photos = (item.photos && item.photos.length ? item.photos : [item.image_url]).map((p) => (typeof p === "string" ? p : p.url || p.image_url));
      const shot = el("img", { class: "shot", src: photos[0], alt: `${item.title}, photo 1 of ${photos.length}` });
      const thumbs = photos.map((src, i) => el("button", {
        type: "button", "aria-label": `Photo ${i + 1} of ${photos.length}`, "aria-current": String(i === 0),
        onclick: () => {
          shot.src = src;
          shot.alt = `${item.title}, photo ${i + 1} of ${photos.length}`;
          thumbs.forEach((t, j) => t.setAttribute("aria-current", String(i === j)));
        },
      }, el("img", { src, alt: "" })));
      const fields = Object.entries(FACETS).filter(([name]) => name !== "price" && item[name])
        .flatMap(([name, title]) => [el("dt", {}, title), el("dd", {}, name === "condition" ? CONDITIONS[item[name]] || item[name] : item[name])]);
      this.dialog.replaceChildren(
        el("button", { type: "button", class: "close", "aria-label": "Close", onclick: () => this.dialog.close() }, "×"),
        el("div", { class: "item" },
          el("div", { class: "gallery" }, shot, photos.length > 1 ? el("div", { class: "thumbs", role: "group", "aria-label": "Photos" }, ...thumbs) : ""),
          el("div", {}, el("h2", { id: `${this.uid}-title` }, item.title), el("p", {}, money(item)), el("dl", {}, ...fields), el("p", {}, item.description || ""))),
        ...(similar.items.length ? [el("h3", {}, "More like this"), el("ul", { class: "grid" }, ...similar.items.map((hit, i) => el("li", {}, this.card(hit, i, null))))] : []));
      if (!this.dialog.open) this.dialog.showModal();
    }

    renderFacets(facets) {
      this.facets.replaceChildren(...Object.entries(FACETS).filter(([name]) => facets[name] && facets[name].length).map(([name, title]) =>
        el("section", { "data-facet": name }, el("h3", {}, title), el("ul", {}, ...facets[name].map((entry) => {
          const price = name === "price";
          const value = price ? entry.min : entry.value;
          const pressed = String(this.filters[price ? "price_min" : name] || "").toLowerCase() === String(value).toLowerCase();
          const text = price ? (entry.max === null ? `${entry.min}+` : `${entry.min} – ${entry.max}`) : name === "condition" ? CONDITIONS[value] || value : value;
          return el("li", {}, el("button", {
            type: "button", "aria-pressed": String(pressed),
            onclick: () => {
              if (price) {
                this.filters.price_min = pressed ? "" : entry.min;
                this.filters.price_max = pressed || entry.max === null ? "" : (Number(entry.max) - 0.01).toFixed(2);
              } else this.filters[name] = pressed ? "" : value;
              this.search();
            },
          }, el("span", {}, text), el("span", { class: "count" }, String(entry.count))));
        })))));
    }

    // Every active filter is a chip that removes it: those chosen here and those read from the words.
    renderChips(interpreted) {
      const label = (name, value) => name === "price_min" ? `From ${value}` : name === "price_max" ? `Up to ${value}` : `${FACETS[name]}: ${name === "condition" ? CONDITIONS[value] || value : value}`;
      const chip = (name, value, drop) => el("button", { type: "button", class: "chip", "aria-label": `Remove filter ${label(name, value)}`, onclick: () => { drop(); this.search(); } }, `${label(name, value)} ×`);
      const chips = FILTERS.filter((name) => this.filters[name]).map((name) => chip(name, this.filters[name], () => (this.filters[name] = "")));
      if (interpreted) {
        for (const [name, value] of Object.entries(interpreted.filters)) {
          chips.push(chip(name, value, () => {
            // The words that said it go; the other constraints read from them stay, as filters.
            this.input.value = interpreted.q;
            for (const [other, kept] of Object.entries(interpreted.filters)) if (other !== name) this.filters[other] = kept;
          }));
        }
      }
      this.chips.replaceChildren(...chips);
    }
  }

  customElements.define("prethrift-search", PrethriftSearch);
})();
