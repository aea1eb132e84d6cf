(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("ferclean-data").textContent);
  var IMG = D.images, M = D.meta, S = D.strings, EMO = D.emotions, SPL = D.splits;
  var DEFAULT = {split: "", label: "", min: 0, sort: "score", size: "96"};
  var state = Object.assign({}, DEFAULT);
  var views = {};  // issue -> {list: filtered entries, page: index}
  var stats = {rendered: 0, loaded: 0, failed: 0};

  function labelName(l) { return l >= 0 ? EMO[l] : "unlabeled"; }
  function matches(i) {
    if (state.split !== "" && SPL[M.split[i]] !== state.split) return false;
    if (state.label !== "" && String(M.label[i]) !== state.label) return false;
    return true;
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmt(x) { return Number(x).toFixed(3); }
  function status() {
    var b = document.body.dataset;
    b.imagesRendered = stats.rendered; b.imagesLoaded = stats.loaded;
    b.imagesFailed = stats.failed;
  }

  // ------------------------------------------------------------- state <-> URL hash
  function parseHash() {
    var s = Object.assign({}, DEFAULT);
    location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
      if (!kv) return;
      var p = kv.split("="), k = decodeURIComponent(p[0]);
      var v = decodeURIComponent((p[1] || "").replace(/\+/g, " "));
      if (k === "split") {
        SPL.forEach(function (n) { if (n.toLowerCase() === v.toLowerCase()) s.split = n; });
      } else if (k === "label") {
        var i = EMO.indexOf(v.toLowerCase());
        if (i >= 0) s.label = String(i);
        else if (v === "unlabeled" || v === "-1") s.label = "-1";
        else if (/^[0-6]$/.test(v)) s.label = v;
      } else if (k === "min") {
        var x = parseFloat(v);
        if (isFinite(x)) s.min = Math.min(1, Math.max(0, x));
      } else if (k === "sort" && (v === "score" || v === "row")) {
        s.sort = v;
      } else if (k === "size" && ["96", "144", "192"].indexOf(v) >= 0) {
        s.size = v;
      }
    });
    return s;
  }
  function toHash(s) {
    var parts = [];
    Object.keys(DEFAULT).forEach(function (k) {
      if (String(s[k]) !== String(DEFAULT[k])) {
        var v = k === "label" ? labelName(Number(s[k])) : s[k];
        parts.push(k + "=" + encodeURIComponent(v));
      }
    });
    return parts.length ? "#" + parts.join("&") : "";
  }
  function writeHash() {
    var h = toHash(state);
    if (h === location.hash || (h === "" && location.hash === "")) return;
    try { history.replaceState(null, "", h || location.pathname + location.search); }
    catch (e) { location.hash = h; }  // file: pages may refuse replaceState
  }

  // ------------------------------------------------------------- filtering
  function byRow(a, b) { return M.row[a] - M.row[b]; }
  // Sorting by score keeps the payload's order among equal scores (sort is stable):
  // there they come one class after another, so a first page shows a mix of classes.
  function filter(issue) {
    var g = D.galleries[issue], list;
    if (g.layout === "items") {
      list = g.items.filter(function (it) { return it[1] >= state.min && matches(it[0]); });
      list.sort(state.sort === "row"
        ? function (a, b) { return byRow(a[0], b[0]); }
        : function (a, b) { return b[1] - a[1]; });
    } else {
      list = g.groups.filter(function (gr) {
        return gr[0] >= state.min && gr[2].some(function (m) { return matches(m[0]); });
      });
      list.sort(state.sort === "row"
        ? function (a, b) { return byRow(a[2][0][0], b[2][0][0]); }
        : function (a, b) { return b[0] - a[0]; });
    }
    return list;
  }
  // what the report's plan does with an image: a badge and its tooltip
  function planMark(removed) {
    return {text: removed ? "removed" : "kept",
            title: "plan " + D.plan + (removed ? " removes this image" : " keeps this image")};
  }

  // ------------------------------------------------------------- rendering
  function thumb(i) {
    var img = el("img", "face");
    img.alt = "row " + M.row[i];
    img.setAttribute("data-testid", "thumb");
    img.onload = function () {
      img.setAttribute("data-loaded", img.naturalWidth + "x" + img.naturalHeight);
      stats.loaded++; status();
    };
    img.onerror = function () {
      img.setAttribute("data-loaded", "error"); stats.failed++; status();
    };
    img.src = IMG[M.img[i]];  // set only when the page is shown: lazy by construction
    img.addEventListener("click", function () { openLightbox(i); });
    stats.rendered++;
    return img;
  }
  // opts: detail (index into S, shown as a caption), extra (badge text), similar (the
  // score is a similarity: near and mirror copies), related (image of the closest copy)
  function card(issue, i, score, opts) {
    opts = opts || {};
    var f = el("figure", "item");
    f.setAttribute("data-testid", "item");
    f.setAttribute("data-issue", issue);
    f.setAttribute("data-row", M.row[i]);
    f.setAttribute("data-split", SPL[M.split[i]]);
    f.setAttribute("data-label", M.label[i]);
    f.setAttribute("data-score", score);
    f.setAttribute("data-match", matches(i) ? "1" : "0");
    if (!matches(i)) f.classList.add("dim");
    f.appendChild(thumb(i));
    var c = el("figcaption");
    var l1 = el("div", "l1");
    l1.appendChild(el("b", null, "#" + M.row[i]));
    var sc = el("span", "score", fmt(score));
    sc.title = opts.similar ? "similarity to the closest member of its group"
                            : "score (higher is worse)";
    l1.appendChild(sc);
    c.appendChild(l1);
    var id = el("div", "id", M.id[i]);
    id.title = M.id[i];
    c.appendChild(id);
    var badges = el("div");
    badges.appendChild(el("span", "badge s" + M.split[i], SPL[M.split[i]]));
    badges.appendChild(el("span", "badge lab", labelName(M.label[i])));
    if (opts.extra) {
      var mark = el("span", "badge rm" + (opts.extra.text === "removed" ? " gone" : ""),
                    opts.extra.text);
      mark.title = opts.extra.title;
      mark.setAttribute("data-testid", "plan-mark");
      f.setAttribute("data-removed", opts.extra.text === "removed" ? "1" : "0");
      badges.appendChild(mark);
    }
    if (opts.suggested !== undefined && opts.suggested >= 0) {
      var sug = el("span", "badge sug", "\u2192 " + labelName(opts.suggested));
      sug.title = "suggested label";
      sug.setAttribute("data-testid", "suggested");
      badges.appendChild(sug);
    }
    c.appendChild(badges);
    if (opts.probs) {  // the model's probability per class: given and suggested marked
      var bars = el("div", "probs");
      bars.setAttribute("data-testid", "probs");
      opts.probs.forEach(function (pct, k) {
        var b = el("span", k === M.label[i] ? "given" : (k === opts.suggested ? "sug" : null));
        b.style.height = Math.max(pct, 2) + "%";
        b.title = labelName(k) + ": " + pct + "%";
        bars.appendChild(b);
      });
      c.appendChild(bars);
    }
    if (opts.similar && opts.related >= 0) {
      var r = el("div", "related", "closest: #" + M.row[opts.related]);
      r.setAttribute("data-testid", "related");
      r.setAttribute("data-related-row", M.row[opts.related]);
      c.appendChild(r);
    }
    if (opts.detail !== undefined && opts.detail !== null) {
      var d = el("div", "detail", S[opts.detail]);
      d.title = S[opts.detail];
      c.appendChild(d);
    }
    f.appendChild(c);
    return f;
  }
  function tally(members, key) {  // "Training ×2, PublicTest ×1", in code order
    var counts = {};
    members.forEach(function (m) {
      var v = M[key][m[0]];
      counts[v] = (counts[v] || 0) + 1;
    });
    return Object.keys(counts).map(Number).sort(function (a, b) {
      return (a < 0 ? 99 : a) - (b < 0 ? 99 : b);  // unlabeled (-1) last
    }).map(function (v) {
      return (key === "label" ? labelName(v) : SPL[v]) + " ×" + counts[v];
    }).join(", ");
  }
  // gr: [score, text, members, kind]; members: [image, score, removed, detail, related]
  function group(issue, gr) {
    var kind = gr[3], similar = kind === "near" || kind === "mirror";
    var box = el("div", "group" + (issue === "label_conflict" ? " conflict" : ""));
    box.setAttribute("data-testid", "group");
    box.setAttribute("data-issue", issue);
    box.setAttribute("data-score", gr[0]);
    box.setAttribute("data-kind", kind);
    var head = el("div", "group-head");
    if (kind) {
      var badge = el("span", "badge kind k-" + kind, kind);
      badge.setAttribute("data-testid", "kind-badge");
      badge.title = {exact: "identical pixels", near: "edited copies",
                     mirror: "a flipped copy in the group"}[kind] || kind;
      head.appendChild(badge);
    }
    head.appendChild(el("b", null, gr[2].length + " images"));
    head.appendChild(el("span", null, tally(gr[2], "split") + " · " +
                                       tally(gr[2], "label")));
    if (similar) {  // near copies: say how similar, from the members' scores
      var s = gr[2].map(function (m) { return m[1]; });
      var lo = fmt(Math.min.apply(null, s)), hi = fmt(Math.max.apply(null, s));
      var sim = el("div", "detail", "similarity " + (lo === hi ? lo : lo + " to " + hi));
      sim.setAttribute("data-testid", "similarity");
      head.appendChild(sim);
    }
    if (gr[1] !== null && S[gr[1]]) head.title = S[gr[1]];
    box.appendChild(head);
    var row = el("div", "members");
    gr[2].forEach(function (m) {
      var it = card(issue, m[0], m[1], {extra: planMark(m[2]),
                                        similar: similar, related: m[4]});
      it.title = S[m[3]];
      row.appendChild(it);
    });
    box.appendChild(row);
    return box;
  }
  function render(issue) {
    var sec = document.querySelector('[data-testid="items-' + issue + '"]');
    if (!sec) return;
    var v = views[issue], g = D.galleries[issue];
    var per = g.layout === "items" ? D.items_per_page : D.groups_per_page;
    var pages = Math.max(1, Math.ceil(v.list.length / per));
    v.page = Math.min(Math.max(0, v.page), pages - 1);
    var start = v.page * per, slice = v.list.slice(start, start + per);
    sec.textContent = "";
    if (!slice.length) {
      sec.appendChild(el("p", "empty", "Nothing matches the filters."));
    }
    var frag = document.createDocumentFragment();
    slice.forEach(function (e) {
      frag.appendChild(g.layout === "items"
        ? card(issue, e[0], e[1], {detail: e[2], extra: planMark(e[3]),
                                   suggested: e[4], probs: e[5]})
        : group(issue, e));
    });
    sec.appendChild(frag);
    var unit = g.layout === "items" ? "images" : "groups";
    var total = g.layout === "items" ? g.items.length : g.groups.length;
    var text = v.list.length
      ? (start + 1) + "–" + (start + slice.length) + " of " + v.list.length + " " + unit
      : "0 " + unit;
    if (v.list.length < total) text += " matching (" + total + " in all)";
    var root = sec.closest("section");
    root.querySelectorAll('[data-testid="count-' + issue + '"]').forEach(function (n) {
      n.textContent = text;
    });
    root.querySelectorAll('[data-testid="page-' + issue + '"]').forEach(function (n) {
      n.textContent = "page " + (v.page + 1) + " of " + pages;
    });
    root.querySelectorAll(".pager button").forEach(function (b) {
      var d = Number(b.getAttribute("data-dir"));
      b.disabled = d < 0 ? v.page === 0 : v.page >= pages - 1;
    });
    root.setAttribute("data-visible", slice.length);
    root.setAttribute("data-matching", v.list.length);
  }
  function applyState(s) {
    var same = ["split", "label", "min", "sort"].every(function (k) {
      return String(s[k]) === String(state[k]);
    });
    state = s;
    document.documentElement.style.setProperty("--face", state.size + "px");
    document.getElementById("f-split").value = state.split;
    document.getElementById("f-label").value = state.label;
    document.getElementById("f-min").value = state.min;
    document.getElementById("f-min-out").textContent = Number(state.min).toFixed(2);
    document.getElementById("f-sort").value = state.sort;
    document.getElementById("f-size").value = state.size;
    if (same && Object.keys(views).length) return;  // only the size changed
    Object.keys(D.galleries).forEach(function (issue) {
      views[issue] = {list: filter(issue), page: 0};
      render(issue);
    });
    status();
  }
  function fromControls() {
    var s = {
      split: document.getElementById("f-split").value,
      label: document.getElementById("f-label").value,
      min: parseFloat(document.getElementById("f-min").value) || 0,
      sort: document.getElementById("f-sort").value,
      size: document.getElementById("f-size").value
    };
    applyState(s);
    writeHash();
  }

  // ------------------------------------------------------------- lightbox
  var box = document.getElementById("lightbox");
  function showLightbox(src, cls, caption) {
    var img = box.querySelector("img");
    img.src = src;
    img.className = cls;
    box.querySelector(".lb-caption").textContent = caption;
    box.hidden = false;
  }
  function openLightbox(i) {
    showLightbox(IMG[M.img[i]], "face big", "row " + M.row[i] + " · " + M.id[i] + " · " +
                 SPL[M.split[i]] + " · " + labelName(M.label[i]));
  }
  // figures open at their full resolution
  document.querySelectorAll("figure.plot img").forEach(function (img) {
    img.addEventListener("click", function () {
      var cap = img.closest("figure").querySelector("figcaption");
      showLightbox(img.src, "plot-big", cap ? cap.textContent : "");
    });
  });
  box.addEventListener("click", function () { box.hidden = true; });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape") box.hidden = true;
  });

  // ------------------------------------------------------------- wiring
  ["f-split", "f-label", "f-sort", "f-size"].forEach(function (id) {
    document.getElementById(id).addEventListener("change", fromControls);
  });
  document.getElementById("f-min").addEventListener("input", fromControls);
  document.getElementById("f-reset").addEventListener("click", function () {
    applyState(Object.assign({}, DEFAULT)); writeHash();
  });
  document.querySelectorAll(".pager button").forEach(function (b) {
    b.addEventListener("click", function () {
      var issue = b.closest("section").getAttribute("data-issue");
      views[issue].page += Number(b.getAttribute("data-dir"));
      render(issue);
      status();
    });
  });
  window.addEventListener("hashchange", function () { applyState(parseHash()); });
  applyState(parseHash());
  document.body.setAttribute("data-ready", "1");
})();
