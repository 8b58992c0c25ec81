// vtrain dashboard: polls api/state and draws it. No dependencies: the
// page works offline, from the node's own port.
"use strict";
(function () {
  var SVGNS = "http://www.w3.org/2000/svg";
  var $ = function (id) { return document.getElementById(id); };

  function text(id, v) { var e = $(id); if (e.textContent !== String(v)) e.textContent = v; }
  function shortPeer(p) { return p.length > 14 ? p.slice(0, 4) + "…" + p.slice(-6) : p; }
  function bytes(n) {
    if (n >= 1 << 30) return (n / (1 << 30)).toFixed(2) + " GB";
    if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + " MB";
    if (n >= 1 << 10) return (n / (1 << 10)).toFixed(1) + " KB";
    return n + " B";
  }
  function pct(x) { return (100 * x).toFixed(1) + "%"; }
  function el(tag, attrs, txt) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (txt !== undefined) e.textContent = txt;
    return e;
  }
  function sel(tag, attrs) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }

  // chart draws series [{cls, name, points: [[round, y], ...]}] into svg:
  // a polyline and a circle per point (data-round), grid lines with labels.
  function chart(svg, series, opt) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    // Drawn in the element's own pixels: text and lines keep their shape
    // at any width.
    var W = Math.max(200, Math.round(svg.clientWidth || svg.getBoundingClientRect().width || 400));
    var H = Math.max(120, Math.round(svg.clientHeight || 190)), L = 52, R = 10, T = 10, B = 20;
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    var xs = [], ys = [];
    series.forEach(function (s) { s.points.forEach(function (p) { xs.push(p[0]); ys.push(p[1]); }); });
    var last = xs.length ? Math.max.apply(null, xs) : -1;
    svg.setAttribute("data-last-round", last);
    svg.setAttribute("data-points", xs.length);
    if (!xs.length) {
      var t = sel("text", { x: W / 2, y: H / 2, "text-anchor": "middle" });
      t.textContent = opt.empty || "no data yet";
      svg.appendChild(t);
      return;
    }
    var x0 = Math.min.apply(null, xs), x1 = Math.max(x0 + 1, last);
    var y0 = opt.yMin !== undefined ? opt.yMin : Math.min.apply(null, ys);
    var y1 = opt.yMax !== undefined ? opt.yMax : Math.max.apply(null, ys);
    if (opt.zero) y0 = Math.min(0, y0);
    if (y1 - y0 < 1e-9) { y1 += 1; y0 -= opt.zero ? 0 : 1; }
    var sx = function (x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
    var sy = function (y) { return H - B - (y - y0) / (y1 - y0) * (H - T - B); };
    for (var i = 0; i <= 4; i++) {
      var v = y0 + (y1 - y0) * i / 4, y = sy(v);
      svg.appendChild(sel("line", { "class": "grid", x1: L, x2: W - R, y1: y, y2: y }));
      var lab = sel("text", { x: L - 4, y: y + 3, "text-anchor": "end" });
      lab.textContent = opt.fmt(v);
      svg.appendChild(lab);
    }
    // Round ticks at an even integer step, as many as fit.
    var step = Math.max(1, Math.ceil((x1 - x0) / Math.max(1, Math.floor(W / 60))));
    for (var r = x0; r <= x1; r += step) {
      var tx = sel("text", { x: sx(r), y: H - 5, "text-anchor": "middle" });
      tx.textContent = r;
      svg.appendChild(tx);
    }
    series.forEach(function (s) {
      if (!s.points.length) return;
      var g = sel("g", { "data-series": s.name });
      g.appendChild(sel("polyline", { "class": s.cls, points: s.points.map(function (p) { return sx(p[0]).toFixed(1) + "," + sy(p[1]).toFixed(1); }).join(" ") }));
      s.points.forEach(function (p) {
        var c = sel("circle", { "class": s.cls, cx: sx(p[0]).toFixed(1), cy: sy(p[1]).toFixed(1), r: s.points.length > 60 ? 1.2 : 2.5, "data-round": p[0], "data-value": p[1] });
        var ti = sel("title", {});
        ti.textContent = s.name + " round " + p[0] + ": " + opt.fmt(p[1]);
        c.appendChild(ti);
        g.appendChild(c);
      });
      svg.appendChild(g);
    });
  }

  function pts(rounds, key) {
    var out = [];
    rounds.forEach(function (r) { if (r[key] !== undefined && r[key] !== null) out.push([r.round, r[key]]); });
    return out;
  }

  function renderSpec(s) {
    var dl = $("spec");
    if (dl.getAttribute("data-done")) return;
    var rows = [["model", s.model], ["data", s.data], ["rounds", s.rounds || "until stopped"], ["inner steps × batch", s.inner_steps + " × " + s.batch],
      ["inner optimizer", s.inner_optimizer], ["outer optimizer", s.outer_optimizer], ["compression", s.compression], ["aggregation", s.aggregation],
      ["quorum", s.quorum], ["round timeout", s.round_timeout], ["challenge rate", s.challenge_rate + " (newcomers " + s.newcomer_challenge_rate + ")"],
      ["founders / max members", s.founders + " / " + s.max_members]];
    if (s.privacy) rows.push(["privacy", s.privacy]);
    rows.forEach(function (r) { dl.appendChild(el("dt", {}, r[0])); dl.appendChild(el("dd", {}, String(r[1]))); });
    dl.setAttribute("data-done", "1");
  }

  function renderContrib(cs, decided) {
    var tb = document.querySelector("#contrib tbody");
    var frag = document.createDocumentFragment();
    cs.forEach(function (c) {
      var tr = el("tr", { "data-peer": c.peer, "data-aggregated": c.updates_aggregated, "data-seen": c.updates_seen });
      if (c.excluded_from !== null && c.excluded_from !== undefined) tr.className = "excluded";
      var status = c.excluded_from !== null && c.excluded_from !== undefined ? "excluded" : c.member ? (c.seat ? "member, votes" : "member") : c.left ? "dropped" : c.since === null ? "outsider" : "left";
      if (c.founder) status += " (founder)";
      var refused = 0, reasons = [];
      Object.keys(c.rejected || {}).sort().forEach(function (k) { refused += c.rejected[k]; reasons.push(k + " ×" + c.rejected[k]); });
      var wait = "–";
      if (c.wait_rounds !== null && c.wait_rounds !== undefined) {
        wait = c.wait_rounds + (c.wait_rounds === 1 ? " round" : " rounds");
        if (c.wait_seconds !== null && c.wait_seconds !== undefined) wait += " (" + c.wait_seconds.toFixed(1) + " s)";
      } else if (c.since !== null && c.excluded_from === null) {
        wait = "waiting";
      }
      var cells = [
        [shortPeer(c.peer), "peer"], [status, "status"], [c.since === null ? "–" : String(c.since), "since"], [String(c.updates_seen), "seen"],
        [String(c.updates_aggregated), "aggregated"], [c.rounds_late ? c.rounds_late + " (" + c.taken_late + " taken late)" : "0", "late"], [refused ? refused + ": " + reasons.join(", ") : "0", refused ? "refused reasons" : "refused"],
        [c.acceptance_rate === null ? "–" : pct(c.acceptance_rate), "acceptance"], [wait, "wait"], [String(c.credit), "credit"], [String(c.work), "work"],
        [c.challenges_passed + " / " + c.challenges_failed, "checks"],
        [c.excluded_from === null ? (c.left || "–") : "from round " + c.excluded_from, "exclusion"]];
      cells.forEach(function (x) {
        var td = el("td", { "class": x[1] }, x[0]);
        if (x[1] === "peer") td.title = c.peer;
        if (x[1] === "checks" && c.challenges_failed > 0) td.className += " bad";
        frag.appendChild(tr).appendChild(td);
      });
      if (c.excluded_from !== null && c.excluded_from !== undefined) {
        // Why, on a row of its own: a reason can be long.
        var why = el("tr", { "class": "excluded why-row" });
        why.appendChild(el("td", { colspan: cells.length, "class": "why" }, "↳ " + shortPeer(c.peer) + " excluded from round " + c.excluded_from + ": " + c.excluded_reason));
        frag.appendChild(why);
      }
    });
    while (tb.firstChild) tb.removeChild(tb.firstChild);
    tb.appendChild(frag);
    tb.setAttribute("data-decided", decided);
  }

  function renderEvents(evs) {
    var ol = $("events");
    while (ol.firstChild) ol.removeChild(ol.firstChild);
    evs.slice().reverse().slice(0, 60).forEach(function (e) {
      var li = el("li", { "data-kind": e.kind });
      li.appendChild(el("time", { datetime: e.time }, new Date(e.time).toLocaleTimeString()));
      li.appendChild(document.createTextNode(e.text));
      ol.appendChild(li);
    });
  }

  function render(s) {
    text("run-id", s.run_id || "–");
    text("run-name", s.spec && s.spec.name && s.spec.name !== "vtrain" ? "· " + s.spec.name : "");
    text("peer", s.peer || "–");
    if (s.spec) renderSpec(s.spec);
    text("round", String(s.round) + (s.spec && s.spec.rounds ? " / " + s.spec.rounds : ""));
    $("round").setAttribute("data-decided", s.decided);
    text("members", String(s.members.length));
    text("voters", String(s.voters));
    text("peers", String(s.peers));
    text("accuracy", s.evaluation ? pct(s.evaluation.accuracy) + " (r" + s.evaluation.round + ")" : "–");
    text("bytes", bytes(s.bytes_in) + " / " + bytes(s.bytes_out));
    if (s.spec && s.spec.rounds) $("progress-bar").style.width = Math.min(100, 100 * s.round / s.spec.rounds) + "%";
    var ul = $("addrs");
    if (!ul.childNodes.length) (s.join_addrs || []).forEach(function (a) { ul.appendChild(el("li", {}, a)); });

    var rs = s.all_rounds;
    chart($("acc-chart"), [{ cls: "s1", name: "accuracy", points: pts(rs, "agreed_accuracy") }],
      { yMin: 0, yMax: 1, fmt: pct, empty: "not evaluated yet" });
    chart($("loss-chart"), [{ cls: "s1", name: "agreed loss", points: pts(rs, "agreed_loss") }, { cls: "s2", name: "inner loss", points: pts(rs, "inner_loss") }],
      { zero: true, fmt: function (v) { return v.toFixed(2); } });
    chart($("bytes-chart"), [{ cls: "s1", name: "in", points: pts(rs, "bytes_in") }, { cls: "s2", name: "out", points: pts(rs, "bytes_out") }],
      { zero: true, fmt: bytes });
    renderContrib(s.contributors || [], s.decided);
    var o = s.own;
    var own = $("own");
    while (own.firstChild) own.removeChild(own.firstChild);
    [["checks run", o.challenges_run], ["passed", o.challenges_passed], ["failed", o.challenges_failed], ["disputes refereed", o.disputes_refereed],
      ["rounds trained", o.rounds_trained], ["training time", o.train_seconds.toFixed(1) + " s"]].forEach(function (x) {
      var d = el("div");
      d.appendChild(el("span", { "class": "label" }, x[0]));
      d.appendChild(el("b", {}, String(x[1])));
      own.appendChild(d);
    });
    renderEvents(s.events || []);
    var st = $("status");
    if (s.stopped) { st.textContent = "stopped"; st.className = "pill done"; }
    else { st.textContent = "live · round " + s.round; st.className = "pill live"; }
  }

  // Redraw at a new width (a phone turned, a window resized).
  var last = null, resizing = 0;
  window.addEventListener("resize", function () {
    clearTimeout(resizing);
    resizing = setTimeout(function () { if (last) render(last); }, 100);
  });

  // The curve points held so far: each poll asks only for the rounds
  // after the last one (a node that started again starts them over).
  var held = [], heldFrom = null;
  function merge(s, since) {
    if (heldFrom !== s.started + s.peer) {
      held = [];
      heldFrom = s.started + s.peer;
      // Another node's points (or this node's before it started
      // again): the next poll asks for all of them.
      if (since !== -1) s.rounds = [];
    }
    var lastRound = held.length ? held[held.length - 1].round : -1;
    (s.rounds || []).forEach(function (p) { if (p.round > lastRound) { held.push(p); lastRound = p.round; } });
    if (held.length > 5000) held = held.slice(held.length - 5000);
    s.all_rounds = held;
  }

  var failures = 0;
  function poll() {
    var since = held.length ? held[held.length - 1].round : -1;
    fetch("api/state?since=" + since, { cache: "no-store" }).then(function (r) {
      if (!r.ok) throw new Error(r.status);
      return r.json();
    }).then(function (s) {
      failures = 0;
      merge(s, since);
      last = s;
      render(s);
    }).catch(function () {
      failures++;
      var st = $("status");
      st.textContent = "node unreachable";
      st.className = "pill stale";
    }).then(function () {
      setTimeout(poll, failures ? Math.min(10000, 1000 * failures) : 1000);
    });
  }
  poll();
})();
