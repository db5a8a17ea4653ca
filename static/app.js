// The pages work without script: the search form and every link lead to server-rendered
// pages. With script, those same pages are fetched and swapped into <main> in place, so that
// money, times and every field are formatted once, on the server, and shown as the server
// escaped them (DOMParser never runs what it parses). On top: a loading state, a second
// search that cancels the first, focus moved to what was loaded, `/` to search, copy
// buttons, and the newest orders refreshed while the list is on screen.
"use strict";

(function () {
  const form = document.querySelector("form.search");
  const input = document.getElementById("q");
  const main = document.getElementById("main");
  const status = document.getElementById("status");
  const REFRESH_MS = 5000;
  let inflight = null;

  function notice(heading, message) {
    const box = document.createElement("div");
    box.className = "notice error";
    box.setAttribute("role", "alert");
    const h = document.createElement("h1");
    h.textContent = heading;
    h.tabIndex = -1;
    const p = document.createElement("p");
    p.textContent = message;
    box.append(h, p);
    return box;
  }

  function parse(html) {
    const doc = new DOMParser().parseFromString(html, "text/html");
    return { doc, main: doc.getElementById("main") };
  }

  // Loads a page of ours into <main>. `how`: "push" (a new history entry), "replace", or
  // "none" (going back and forth). Returns the number of orders listed, or -1.
  async function show(url, how) {
    if (inflight) inflight.abort();
    const controller = new AbortController();
    inflight = controller;
    main.setAttribute("aria-busy", "true");
    status.textContent = "Loading…";
    let html;
    try {
      const response = await fetch(url, { signal: controller.signal, headers: { Accept: "text/html" } });
      html = await response.text();
    } catch (e) {
      if (e.name === "AbortError") return -1;
      finish(controller);
      main.replaceChildren(notice("Network error", "The service did not answer. Try again in a moment."));
      status.textContent = "Network error";
      return -1;
    }
    if (controller !== inflight) return -1;
    finish(controller);
    const page = parse(html);
    if (!page.main) {
      main.replaceChildren(notice("Something went wrong", "The service answered with something that is not a page."));
      return -1;
    }
    main.replaceChildren(...Array.from(page.main.childNodes, (n) => document.importNode(n, true)));
    document.title = page.doc.title;
    if (how === "push") history.pushState(null, "", url);
    if (how === "replace") history.replaceState(null, "", url);
    const q = page.doc.getElementById("q");
    if (q && document.activeElement !== input) input.value = q.value;
    enhance();
    status.textContent = "Loaded: " + page.doc.title;
    const heading = main.querySelector("h1");
    if (heading) heading.focus();
    return main.querySelectorAll("table.orders tbody tr").length;
  }

  function finish(controller) {
    if (inflight === controller) inflight = null;
    main.removeAttribute("aria-busy");
  }

  async function search(q) {
    const url = q ? "/?q=" + encodeURIComponent(q) : "/";
    const found = await show(url, "push");
    // The order whose uid was given, or the only match: open it (the list stays one step
    // back in history).
    if (q && found > 0) {
      const links = Array.from(main.querySelectorAll("table.orders tbody a"));
      const link = links.find((a) => a.textContent === q) || (found === 1 ? links[0] : null);
      if (link) await show(link.getAttribute("href"), "push");
    }
  }

  function copyButtons() {
    for (const target of main.querySelectorAll("[data-copy]")) {
      if (target.nextElementSibling && target.nextElementSibling.classList.contains("copy")) continue;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "copy";
      button.textContent = "Copy";
      button.setAttribute("aria-label", "Copy " + target.dataset.copy);
      button.addEventListener("click", async () => {
        try {
          await navigator.clipboard.writeText(target.textContent);
          button.textContent = "Copied";
        } catch (_) {
          window.getSelection().selectAllChildren(target);
          button.textContent = "Selected";
        }
        status.textContent = target.dataset.copy + " copied";
        setTimeout(() => { button.textContent = "Copy"; }, 1500);
      });
      target.after(button);
    }
  }

  function enhance() {
    copyButtons();
  }

  // The newest orders, refreshed in place while they are on screen and nothing else loads.
  async function refresh() {
    const table = main.querySelector("table.orders[data-live]");
    const empty = location.pathname === "/" && !location.search && !table;
    if (document.hidden || inflight || (!table && !empty)) return;
    let html;
    try {
      const response = await fetch("/", { headers: { Accept: "text/html" } });
      if (!response.ok) return;
      html = await response.text();
    } catch (_) {
      return;
    }
    if (inflight || location.pathname !== "/" || location.search) return;
    const page = parse(html);
    const fresh = page.main && page.main.querySelector("table.orders[data-live]");
    if (!fresh) return;
    const first = (t) => t && t.querySelector("tbody a") && t.querySelector("tbody a").textContent;
    if (first(fresh) === first(table)) return;
    const old = table ? table.closest(".scroll") : main.querySelector("p.hint");
    const replacement = document.importNode(fresh.closest(".scroll"), true);
    if (old) old.replaceWith(replacement);
    const pager = main.querySelector("nav.pager");
    const freshPager = page.main.querySelector("nav.pager");
    if (pager && freshPager) pager.replaceWith(document.importNode(freshPager, true));
    else if (freshPager) main.append(document.importNode(freshPager, true));
    status.textContent = "New orders arrived";
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    search(input.value.trim());
  });
  // Links to our pages load in place; the raw JSON and everything else navigate.
  main.addEventListener("click", (event) => {
    const link = event.target.closest("a[href]");
    if (!link || link.classList.contains("raw") || event.ctrlKey || event.metaKey || event.shiftKey) return;
    const href = link.getAttribute("href");
    if (!(href.startsWith("/orders/") || href.startsWith("/?"))) return;
    event.preventDefault();
    show(href, "push");
  });
  window.addEventListener("popstate", () => show(location.pathname + location.search, "none"));
  document.addEventListener("keydown", (event) => {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    const tag = document.activeElement && document.activeElement.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") return;
    event.preventDefault();
    input.focus();
    input.select();
  });
  enhance();
  setInterval(refresh, REFRESH_MS);
})();
