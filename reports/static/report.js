/* halbench report: draws the per-sample views from their inline JSON, a page at a time.
   Data is untrusted model output: it only ever reaches the page as text nodes (textContent / createTextNode)
   or as image sources checked to be base64 data: URIs. No innerHTML, no eval, no network. */
(function () {
  "use strict";
  var TONES = { good: "b-good", bad: "b-bad", warn: "b-warn", info: "b-info", muted: "b-muted" };
  var MARKS = { h: "m-hal", c: "m-ok" };
  var DATA_URI = /^data:image\/(jpeg|png);base64,[A-Za-z0-9+\/=]+$/;
  var thumbs = {};

  function readJson(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  /* Long texts (a rambling answer, a huge judge reply) are drawn lazily: the first SHOW characters and a
     "show all" button that draws the rest on demand, so a page of rows stays fast to lay out. */
  var SHOW = 2000;

  function showAll(box, total, redraw) {
    var more = el("button", "show-all", "show all (" + total.toLocaleString() + " characters)");
    more.type = "button";
    more.addEventListener("click", function () { redraw(); });
    box.appendChild(document.createTextNode("\u2026 "));
    box.appendChild(more);
  }

  function longText(text, cls) {
    var box = el("div", cls || null), full = String(text);
    if (full.length <= SHOW) { box.textContent = full; return box; }
    box.textContent = full.slice(0, SHOW);
    showAll(box, full.length, function () { box.textContent = full; });
    return box;
  }

  function marked(v, all) {
    var box = el("div", "caption"), pos = 0, text = String(v.t);
    var end = all || text.length <= SHOW ? text.length : SHOW;
    v.m.forEach(function (span) {
      if (span[0] >= end) { return; }
      var start = Math.max(pos, span[0]), stop = Math.min(span[1], end);
      if (start > pos) { box.appendChild(document.createTextNode(text.slice(pos, start))); }
      var mark = el("mark", MARKS[span[2]] || "", text.slice(start, stop));
      mark.title = (span[2] === "h" ? "hallucinated: " : "correct: ") + String(span[3] || "");
      box.appendChild(mark);
      pos = Math.max(pos, stop);
    });
    box.appendChild(document.createTextNode(text.slice(pos, end)));
    if (end < text.length) {
      showAll(box, text.length, function () { box.parentNode.replaceChild(marked(v, true), box); });
    }
    return box;
  }

  function thumb(v) {
    var src = v.th === null ? null : thumbs[v.th];
    if (typeof src === "string" && DATA_URI.test(src)) {
      var img = el("img", "thumb");
      img.alt = String(v.alt || "");
      img.src = src;
      return img;
    }
    return el("span", "thumb-missing", v.alt || "no image");
  }

  function cell(v) {
    if (v === null || v === undefined) { return el("span", "b-muted", "—"); }
    if (typeof v !== "object") { return longText(v); }
    if (Array.isArray(v)) {
      var box = el("div");
      v.forEach(function (x) { var part = el("div"); part.appendChild(cell(x)); box.appendChild(part); });
      return box;
    }
    if ("b" in v) { return el("span", "badge " + (TONES[v.c] || ""), v.b); }
    if ("m" in v) { return marked(v); }
    if ("th" in v) { return thumb(v); }
    if ("d" in v) {
      var det = el("details");
      det.appendChild(el("summary", null, v.s || "details"));
      det.appendChild(longText(v.d, "caption"));
      return det;
    }
    return el("div", null, JSON.stringify(v));
  }

  function words(v, out) {
    if (v === null || v === undefined) { return out; }
    if (typeof v !== "object") { out.push(String(v)); }
    else if (Array.isArray(v)) { v.forEach(function (x) { words(x, out); }); }
    else { ["b", "t", "d", "alt"].forEach(function (k) { if (k in v) { words(v[k], out); } }); }
    return out;
  }

  function View(root, spec) {
    this.spec = spec; this.page = 0; this.size = spec.page || 25; this.query = ""; this.filters = {};
    this.hay = null; this.rows = spec.rows;
    var body = root.querySelector(".view-body"), self = this;
    var controls = el("div", "controls");
    spec.filters.forEach(function (f) {
      var label = el("label", null, f.label + " "), select = el("select");
      select.setAttribute("data-filter", f.k);
      select.appendChild(new Option("all (" + spec.rows.length + ")", ""));
      f.options.forEach(function (o) { select.appendChild(new Option(o[1], o[0])); });
      select.addEventListener("change", function () { self.filters[f.k] = select.value; self.update(); });
      label.appendChild(select); controls.appendChild(label);
    });
    var search = el("input");
    search.type = "search"; search.placeholder = "search text, class, id";
    search.addEventListener("input", function () { self.query = search.value.toLowerCase(); self.update(); });
    controls.appendChild(search);
    this.prev = el("button", "prev", "‹ prev"); this.next = el("button", "next", "next ›");
    this.prev.type = "button"; this.next.type = "button";
    this.prev.addEventListener("click", function () { self.page -= 1; self.draw(); });
    this.next.addEventListener("click", function () { self.page += 1; self.draw(); });
    this.info = el("span", "info");
    controls.appendChild(this.prev); controls.appendChild(this.info); controls.appendChild(this.next);
    var table = el("table", "rows"), head = el("tr"), cols = el("colgroup");
    spec.columns.forEach(function (c, i) {
      var col = el("col"), w = (spec.widths || [])[i];
      if (typeof w === "number") { col.style.width = w + "px"; }
      cols.appendChild(col);
      head.appendChild(el("th", null, c));
    });
    table.appendChild(cols);
    table.appendChild(el("thead")).appendChild(head);
    this.tbody = table.appendChild(el("tbody"));
    body.textContent = "";
    body.appendChild(controls); body.appendChild(table);
    this.update();
  }

  View.prototype.matches = function (row, i) {
    for (var k in this.filters) {
      if (this.filters[k] && row.f[k] !== this.filters[k]) { return false; }
    }
    if (!this.query) { return true; }
    if (this.hay === null) {  // built on first search only: 10,000 rows cost nothing until then
      this.hay = this.spec.rows.map(function (r) { return words(r.c, []).join(" ").toLowerCase(); });
    }
    return this.hay[i].indexOf(this.query) !== -1;
  };

  View.prototype.update = function () {
    var self = this;
    this.rows = this.spec.rows.filter(function (row, i) { return self.matches(row, i); });
    this.page = 0;
    this.draw();
  };

  View.prototype.draw = function () {
    var pages = Math.max(1, Math.ceil(this.rows.length / this.size));
    this.page = Math.min(Math.max(0, this.page), pages - 1);
    var start = this.page * this.size, shown = this.rows.slice(start, start + this.size), tbody = this.tbody;
    tbody.textContent = "";
    shown.forEach(function (row) {
      var tr = el("tr");
      row.c.forEach(function (v) { var td = el("td"); td.appendChild(cell(v)); tr.appendChild(td); });
      tbody.appendChild(tr);
    });
    if (!shown.length) {
      var td = el("td", "note", "no rows match");
      td.colSpan = this.spec.columns.length;
      tbody.appendChild(el("tr")).appendChild(td);
    }
    this.info.textContent = this.rows.length ?
      (start + 1) + "–" + (start + shown.length) + " of " + this.rows.length + " (page " + (this.page + 1) + "/" + pages + ")" :
      "0 of " + this.spec.rows.length;
    this.prev.disabled = this.page === 0;
    this.next.disabled = this.page >= pages - 1;
  };

  function init() {
    thumbs = readJson("thumbs-data") || {};
    Array.prototype.forEach.call(document.querySelectorAll("figure.artifact"), function (fig) {
      fig.title = "click to enlarge";
      fig.addEventListener("click", function () { fig.classList.toggle("wide"); });
    });
    var views = document.querySelectorAll(".sample-view");
    Array.prototype.forEach.call(views, function (root) {
      try {
        root.view = new View(root, readJson(root.getAttribute("data-view")));
      } catch (err) {
        root.querySelector(".view-body").appendChild(el("p", "view-error", "could not draw this view: " + err));
        console.error("halbench report: view " + root.id + ": " + err);
      }
    });
    document.documentElement.setAttribute("data-ready", "1");
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
}());
