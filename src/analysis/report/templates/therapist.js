/* The therapist page's client finder and client charts, from the compact data block #client-data
   (analysis/report/clients.py says its layout). Nothing is drawn for every client at load: the finder
   shows one page of rows, charts are drawn for the clients it shows and for a client opened by a link
   (#client-ID). No network, no external script: the page works opened from a file. */
(function () {
  "use strict";
  var block = document.getElementById("client-data");
  if (!block) { return; }
  var D = JSON.parse(block.textContent), C = D.clients, M = D.measure, N = C.length;
  var ID = 0, GROUP = 1, STATUS = 2, SESSIONS = 3, FIRST_DAY = 4, LAST_DAY = 5, SINCE = 6, THER = 7, FLAGS = 8,
    TARGET = 9, DAYS = 10, VALUES = 11, BAND = 12, AT = 13;
  var PAGE = 50, CARDS = 12;
  var index = {};
  for (var n = 0; n < N; n += 1) { index[C[n][ID]] = n; }
  var day0 = Date.UTC(+D.day0.slice(0, 4), +D.day0.slice(5, 7) - 1, +D.day0.slice(8, 10));

  function esc(s) {
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  }
  function num(v, digits) {  /* as the page's num filter: fixed decimals and a real minus sign */
    if (v === null || v === undefined) { return "\u2014"; }
    var t = v.toFixed(digits);
    if (+t === 0) { t = (0).toFixed(digits); }
    return t.charAt(0) === "-" ? "\u2212" + t.slice(1) : t;
  }
  function signed(v) { return (v > 0 ? "+" : "") + num(v, v % 1 ? 1 : 0); }
  function date(days) { return new Date(day0 + days * 864e5).toISOString().slice(0, 10); }
  function group(c) { return D.groups[c[GROUP]]; }
  function status(c) { return D.statuses[c[STATUS]]; }
  function base(c) { var v = c[VALUES] || []; return v.length ? v[0] : null; }
  function latest(c) { var v = c[VALUES] || []; return v.length ? v[v.length - 1] : null; }
  function ref(i) { return D.refs && D.refs[i] ? D.refs[i] : ""; }
  function clip(v) { return Math.min(Math.max(v, M.min), M.max); }

  /* ---- one client's chart: values by week, the MCID band, the expected-recovery band ---- */
  var W = 240, H = 96, PL = 26, PR = 8, PT = 8, PB = 18;
  function interp(knots, w) {  /* knots: [week, value, week, value, ...] */
    if (w <= knots[0]) { return knots[1]; }
    for (var k = 2; k < knots.length; k += 2) {
      if (w <= knots[k]) { return knots[k - 1] + (knots[k + 1] - knots[k - 1]) * (w - knots[k - 2]) / (knots[k] - knots[k - 2]); }
    }
    return knots[knots.length - 1];
  }
  /* the band as drawn: weeks, expected, low and high (cut to the measure's range) */
  function band(c) {
    var b = c[BAND] || [], out = { w: [], mid: [], low: [], high: [] };
    if (!b.length) { return out; }
    var curve = D.band_curves[b[0]], knots = b.slice(1);
    for (var k = 0; k < curve.length; k += 2) {
      var e = interp(knots, curve[k]);
      out.w.push(curve[k]); out.mid.push(clip(e)); out.low.push(clip(e - curve[k + 1])); out.high.push(clip(e + curve[k + 1]));
    }
    return out;
  }
  function chart(c, label) {
    var weeks = (c[DAYS] || []).map(function (d) { return d / 7; }), values = c[VALUES] || [], b = band(c);
    var lo = M.min, hi = M.max, span = (hi - lo) || 1, colour = D.colours[c[GROUP]] || "#555555";
    var wmax = Math.max(1, weeks.length ? Math.max.apply(null, weeks) : 1, b.w.length ? b.w[b.w.length - 1] : 0);
    function x(w) { return PL + (W - PL - PR) * (w / wmax); }
    function y(v) { return PT + (H - PT - PB) * (1 - (v - lo) / span); }
    function pts(ws, vs, d) {
      return ws.map(function (w, k) { return x(w).toFixed(d) + "," + y(vs[k]).toFixed(d); }).join(" ");
    }
    var out = ['<svg class="spark" viewBox="0 0 ' + W + " " + H + '" role="img" aria-label="' + esc(label) + '">'];
    if (c[TARGET] !== null && c[TARGET] !== undefined && values.length) {
      var top = y(Math.max(clip(values[0]), clip(c[TARGET]))), bottom = y(Math.min(clip(values[0]), clip(c[TARGET])));
      out.push('<rect x="' + PL + '" y="' + top.toFixed(0) + '" width="' + (W - PL - PR) + '" height="' +
        Math.max(bottom - top, 1).toFixed(0) + '" fill="#e6e6e6"/>');
    }
    if (b.w.length) {
      out.push('<polygon class="band" points="' + pts(b.w, b.high, 1) + " " + pts(b.w.slice().reverse(), b.low.slice().reverse(), 1) +
        '" fill="' + colour + '" fill-opacity="0.16"/>');
      out.push('<polyline points="' + pts(b.w, b.mid, 1) + '" fill="none" stroke="' + colour +
        '" stroke-width="1" stroke-dasharray="3 2" stroke-opacity="0.8"/>');
    }
    [lo, (lo + hi) / 2, hi].forEach(function (t) {
      out.push('<text x="' + (PL - 3) + '" y="' + (y(t) + 3).toFixed(0) + '" text-anchor="end">' + t + "</text>");
    });
    out.push('<text x="' + (W - PR) + '" y="' + (H - 4) + '" text-anchor="end">week ' + wmax.toFixed(0) + "</text>" +
      '<text x="' + PL + '" y="' + (H - 4) + '">0</text>');
    if (values.length > 1) {
      out.push('<polyline points="' + pts(weeks, values, 0) + '" fill="none" stroke="' + colour + '" stroke-width="1.6"/>');
    }
    var dots = weeks.map(function (w, k) { return "M" + x(w).toFixed(0) + " " + y(values[k]).toFixed(0) + "h0"; }).join("");
    out.push('<path d="' + dots + '" stroke="' + colour + '" stroke-width="4" stroke-linecap="round"/></svg>');
    return out.join("");
  }

  /* the chart's text alternative, shown under it: last score, change, status, the expected band */
  function summary(c) {
    var t = "First " + num(base(c), base(c) % 1 ? 1 : 0) + ", latest " + num(latest(c), latest(c) % 1 ? 1 : 0) +
      " (change " + signed(latest(c) - base(c)) + ") after " + c[SESSIONS] + " session" + (c[SESSIONS] === 1 ? "" : "s") +
      "; last seen " + (c[SINCE] === 0 ? "this week" : c[SINCE] + " wk ago") + "; " + status(c);
    var at = c[AT];
    if (at && at.length) { t += "; expected at the latest visit " + num(at[0], 1) + " (band " + num(at[1], 1) + " to " + num(at[2], 1) + ")"; }
    return t + ".";
  }

  function card(i, anchor) {
    var c = C[i], text = summary(c), r = ref(i);
    return '<figure class="client-card' + (anchor ? ' opened" id="client-' + esc(c[ID]) + '" tabindex="-1' : "") +
      '" data-id="' + esc(c[ID]) + '"><figcaption><a href="#client-' + esc(c[ID]) + '"><code>' + esc(c[ID]) + "</code></a> \u00b7 " +
      esc(group(c)) + " \u00b7 " + esc(status(c)) + (r ? ' <span class="ref">' + esc(r) + "</span>" : "") + "</figcaption>" +
      chart(c, M.label + " of client " + c[ID] + " by week. " + text) + '<p class="card-text">' + esc(text) + "</p></figure>";
  }

  /* ---- the finder: filter, sort, one page of rows, charts of the first few ---- */
  var input = document.getElementById("finder"), count = document.getElementById("finder-count");
  var body = document.querySelector("#client-table tbody"), cards = document.getElementById("client-cards");
  var more = document.getElementById("finder-more"), all = document.getElementById("finder-all");
  var order = [], hits = [], limit = PAGE, hay = null;
  for (n = 0; n < N; n += 1) { order.push(n); }
  var KEYS = [
    function (c) { return c[ID]; }, group, function (c) { return c[SESSIONS]; }, function (c) { return c[FIRST_DAY]; },
    function (c) { return c[LAST_DAY]; }, function (c) { return c[SINCE]; }, function (c) { return base(c); },
    function (c) { return latest(c); }, function (c) { return latest(c) - base(c); },
    function (c) { return c[STATUS]; }, function (c) { return D.therapists[c[THER]]; }
  ];
  function row(i) {
    var c = C[i], id = esc(c[ID]), r = ref(i);
    return "<tr><td data-label=\"Client\"><a href=\"#client-" + id + "\"><code>" + id + "</code></a>" +
      (r ? ' <span class="ref">' + esc(r) + "</span>" : "") + '</td><td data-label="Group">' + esc(group(c)) +
      '</td><td class="num" data-label="Sessions">' + c[SESSIONS] + '</td><td data-label="First visit">' + date(c[FIRST_DAY]) +
      '</td><td data-label="Last visit">' + date(c[LAST_DAY]) + '</td><td class="num" data-label="Weeks since">' + c[SINCE] +
      '</td><td class="num" data-label="First">' + num(base(c), 0) + '</td><td class="num" data-label="Latest">' + num(latest(c), 0) +
      '</td><td class="num" data-label="Change">' + num(latest(c) - base(c), 0) + '</td><td data-label="Status">' + esc(status(c)) +
      '</td><td data-label="Therapist">' + esc(D.therapists[c[THER]]) + "</td></tr>";
  }
  function filter() {
    var q = input.value.trim().toLowerCase();
    if (q && !hay) {
      hay = C.map(function (c, i) { return (c[ID] + " " + group(c) + " " + status(c) + " " + D.therapists[c[THER]] + " " + ref(i)).toLowerCase(); });
    }
    hits = q ? order.filter(function (i) { return hay[i].indexOf(q) >= 0; }) : order;
    limit = PAGE;
    show();
  }
  function show() {
    var shown = Math.min(limit, hits.length);
    body.innerHTML = hits.slice(0, shown).map(row).join("");
    cards.innerHTML = hits.slice(0, CARDS).map(function (i) { return card(i, false); }).join("");
    count.textContent = (input.value.trim() ? hits.length + " of " + N + " clients match" : N + " clients") +
      (shown < hits.length ? "; the first " + shown + " are listed" : "") +
      "; charts of the first " + Math.min(CARDS, hits.length) + " below the table";
    more.hidden = all.hidden = shown >= hits.length;
  }
  more.addEventListener("click", function () { limit += 200; show(); });
  all.addEventListener("click", function () { limit = hits.length; show(); });
  input.addEventListener("input", filter);
  Array.prototype.forEach.call(document.querySelectorAll("#client-table th"), function (th, col) {
    th.tabIndex = 0; th.setAttribute("role", "button");
    function sort() {
      var dir = th.dataset.dir === "asc" ? -1 : 1, key = KEYS[col];
      Array.prototype.forEach.call(th.parentNode.children, function (o) { if (o !== th) { delete o.dataset.dir; o.removeAttribute("aria-sort"); } });
      th.dataset.dir = dir === 1 ? "asc" : "desc";
      th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
      order.sort(function (a, b) {
        var x = key(C[a]), y = key(C[b]);
        return (x > y ? 1 : x < y ? -1 : a - b) * (x === y ? 1 : dir);
      });
      filter();
    }
    th.addEventListener("click", sort);
    th.addEventListener("keydown", function (e) { if (e.key === "Enter") { sort(); } });
  });
  filter();

  /* ---- a client opened by a link (#client-ID): their card above the finder, in view ---- */
  var opened = document.getElementById("client-open");
  function open() {
    var m = /^#client-(.+)$/.exec(location.hash), id = m ? decodeURIComponent(m[1]) : null;
    if (id === null) { return; }
    var i = index[id];
    opened.innerHTML = i === undefined ? "<p>No client " + esc(id) + " on this page.</p>" : card(i, true);
    var el = opened.firstChild;
    el.scrollIntoView();
    if (el.focus) { el.focus({ preventScroll: true }); }
  }
  window.addEventListener("hashchange", open);
  open();

  /* ---- trend lines of the whole worklist, drawn when it is opened ---- */
  function spark(c) {
    var v = c[VALUES] || [], w = 80, h = 20, k = v.length, span = (M.max - M.min) || 1;
    if (!k) { return ""; }
    var xs = v.map(function (_, j) { return 2 + (w - 4) * (j / Math.max(k - 1, 1)); });
    var ys = v.map(function (u) { return 2 + (h - 4) * (1 - (u - M.min) / span); });
    return '<svg class="sparkline" viewBox="0 0 80 20" width="80" height="20" aria-hidden="true"><polyline points="' +
      xs.map(function (x, j) { return x.toFixed(1) + "," + ys[j].toFixed(1); }).join(" ") +
      '" fill="none" stroke="#333" stroke-width="1.2"/><circle cx="' + xs[k - 1].toFixed(1) + '" cy="' + ys[k - 1].toFixed(1) +
      '" r="2" fill="#c0392b"/></svg>';
  }
  var full = document.querySelector("details.all-worklist");
  if (full) {
    full.addEventListener("toggle", function () {
      if (!full.open || full.dataset.drawn) { return; }
      full.dataset.drawn = "1";
      var rows = full.querySelectorAll("tbody tr"), at = 0;
      (function chunk() {
        for (var end = Math.min(at + 500, rows.length); at < end; at += 1) {
          var a = rows[at].querySelector("a"), i = a ? index[decodeURIComponent(a.hash.slice(8))] : undefined;
          if (i !== undefined) { rows[at].insertCell().innerHTML = spark(C[i]); }
        }
        if (at < rows.length) { requestAnimationFrame(chunk); }
      })();
    });
  }
})();
