// Order lookup: calls GET /order/{uid} and renders the answer with DOM text nodes only (no
// innerHTML), so that no field of an order can ever run as markup or script.
"use strict";

(function () {
  const form = document.querySelector("form.search");
  const input = document.getElementById("uid");
  const main = document.getElementById("main");

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function money(value, currency) {
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(value);
    } catch (_) {
      return value + " " + currency;
    }
  }

  function pairs(rows) {
    const dl = el("dl");
    for (const [term, value, cls] of rows) {
      dl.append(el("dt", {}, term), el("dd", cls ? { class: cls } : {}, value));
    }
    return dl;
  }

  function render(o) {
    const p = o.payment;
    const cur = (v) => money(v, p.currency);
    const created = new Date(o.date_created);
    const paid = new Date(p.payment_dt * 1000);
    const d = o.delivery;
    const rows = o.items.map((it) =>
      el("tr", {},
        el("td", {}, it.name), el("td", {}, it.brand), el("td", {}, it.size),
        el("td", { class: "num" }, cur(it.price)), el("td", { class: "num" }, it.sale + "%"),
        el("td", { class: "num" }, cur(it.total_price))));
    const sum = o.items.reduce((s, it) => s + it.total_price, 0);
    return el("article", { class: "order", "data-uid": o.order_uid },
      el("h1", {}, "Order ", el("span", { class: "mono" }, o.order_uid)),
      el("p", { class: "meta" }, "Track ", el("span", { class: "mono" }, o.track_number),
        " · created " + created.toLocaleString() + " · " + o.entry + " · " + o.delivery_service),
      el("div", { class: "cards" },
        el("section", { class: "card" }, el("h2", {}, "Delivery"), pairs([
          ["Name", d.name], ["Phone", d.phone], ["E-mail", d.email],
          ["Address", [d.address, d.city, d.region, d.zip].join(", ")]])),
        el("section", { class: "card" }, el("h2", {}, "Payment"), pairs([
          ["Amount", cur(p.amount), "num"], ["Goods", cur(p.goods_total), "num"],
          ["Delivery", cur(p.delivery_cost), "num"], ["Customs", cur(p.custom_fee), "num"],
          ["Paid", paid.toLocaleString()], ["Provider", p.provider + " · " + p.bank],
          ["Transaction", p.transaction, "mono"]]))),
      el("section", { class: "card" }, el("h2", {}, "Items"),
        el("div", { class: "scroll" }, el("table", {},
          el("thead", {}, el("tr", {}, el("th", {}, "Item"), el("th", {}, "Brand"), el("th", {}, "Size"),
            el("th", { class: "num" }, "Price"), el("th", { class: "num" }, "Sale"), el("th", { class: "num" }, "Total"))),
          el("tbody", {}, ...rows),
          el("tfoot", {}, el("tr", {}, el("th", { colspan: "5" }, "Sum"), el("th", { class: "num" }, cur(sum))))))));
  }

  function notice(kind, heading, message) {
    return el("div", { class: "notice " + kind, role: "alert" }, el("h1", {}, heading), el("p", {}, message));
  }

  const MESSAGES = {
    not_found: ["Not found", "No order has this uid. Check it and try again."],
    invalid_uid: ["Invalid uid", "An order uid has 1 to 64 letters and digits, nothing else."],
    unavailable: ["Service unavailable", "The order store cannot be reached right now. Try again in a moment."],
  };

  async function lookup(uid) {
    main.replaceChildren(el("p", { class: "hint", id: "status", role: "status" }, "Looking up " + uid + "…"));
    let response;
    try {
      response = await fetch("/order/" + encodeURIComponent(uid), { headers: { Accept: "application/json" } });
    } catch (_) {
      main.replaceChildren(notice("error", "Network error", "The service did not answer."));
      return;
    }
    if (response.ok) {
      main.replaceChildren(render(await response.json()));
      document.title = "Order " + uid + " · order-svc";
      return;
    }
    let code = "internal";
    try { code = (await response.json()).error; } catch (_) { /* not JSON */ }
    const [heading, message] = MESSAGES[code] || ["Something went wrong", "The service answered " + response.status + "."];
    main.replaceChildren(notice(code === "not_found" ? "" : "error", heading, message));
  }

  function current() {
    return new URLSearchParams(location.search).get("uid");
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const uid = input.value.trim();
    if (!uid) return;
    history.pushState({ uid }, "", "/?uid=" + encodeURIComponent(uid));
    lookup(uid);
  });
  window.addEventListener("popstate", () => {
    const uid = current();
    if (uid) { input.value = uid; lookup(uid); }
  });
  // On the search page, a shared /?uid=... link shows its order at once.
  if (location.pathname === "/" && current()) {
    input.value = current();
    lookup(current());
  }
})();
