// The pair browser of scir's report page (src/report/html.rs). No network, no libraries.
"use strict";
window.addEventListener("error", function () {
  var b = document.body;
  b.dataset.errors = String(Number(b.dataset.errors || 0) + 1);
});
(function () {
  var pairs = JSON.parse(document.getElementById("pair-data").textContent);
  var $ = function (id) { return document.getElementById(id); };
  var state = { arm: "", iter: "", inconsistent: false, wrong: false, selected: false,
                q: "", sort: "pair_id", desc: false };

  function unique(values) {
    return values.filter(function (v, i) { return values.indexOf(v) === i; });
  }
  function fill(select, values) {
    select.innerHTML = "";
    values.forEach(function (v) {
      var o = document.createElement("option");
      o.value = o.textContent = String(v);
      select.appendChild(o);
    });
  }
  function readHash() {
    var h = new URLSearchParams(location.hash.slice(1));
    if (h.has("arm")) state.arm = h.get("arm");
    if (h.has("iter")) state.iter = h.get("iter");
    ["inconsistent", "wrong", "selected"].forEach(function (k) { state[k] = h.get(k) === "1"; });
    if (h.has("q")) state.q = h.get("q");
    if (h.has("sort")) state.sort = h.get("sort");
    state.desc = h.get("desc") === "1";
  }
  function writeHash() {
    var h = new URLSearchParams();
    h.set("arm", state.arm); h.set("iter", state.iter);
    ["inconsistent", "wrong", "selected"].forEach(function (k) { if (state[k]) h.set(k, "1"); });
    if (state.q) h.set("q", state.q);
    if (state.sort !== "pair_id") h.set("sort", state.sort);
    if (state.desc) h.set("desc", "1");
    history.replaceState(null, "", "#" + h.toString());
  }
  // A label disagrees with gold when both exist and gold is not a tie.
  function wrong(p) {
    return p.label !== null && p.gold_label !== null && p.gold_label !== "tie" &&
      p.label !== p.gold_label;
  }
  function shown() {
    var q = state.q.toLowerCase();
    var rows = pairs.filter(function (p) {
      return p.arm === state.arm && String(p.iteration) === state.iter &&
        (!state.inconsistent || !p.consistent) && (!state.wrong || wrong(p)) &&
        (!state.selected || p.selected) &&
        (!q || (p.prompt + "\n" + p.y1 + "\n" + p.y2).toLowerCase().indexOf(q) >= 0);
    });
    var k = state.sort, sign = state.desc ? -1 : 1;
    rows.sort(function (a, b) {
      var x = a[k], y = b[k];
      if (x === y) return a.pair_id - b.pair_id;
      if (x === null) return 1;
      if (y === null) return -1;
      return (x < y ? -1 : 1) * sign;
    });
    return rows;
  }
  function cell(tr, text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }
  function gold(p) {
    if (p.gold_label === null) return "—";
    return p.gold_label + " (" + p.gold_1.toFixed(3) + " / " + p.gold_2.toFixed(3) + ")";
  }
  function render() {
    var body = document.querySelector("#pairs tbody");
    body.innerHTML = "";
    var rows = shown();
    rows.forEach(function (p) {
      var tr = document.createElement("tr");
      if (!p.consistent) tr.classList.add("inconsistent");
      if (wrong(p)) tr.classList.add("wrong");
      cell(tr, String(p.pair_id), "num");
      cell(tr, p.prompt, "text");
      var a = cell(tr, p.y1, "text"), b = cell(tr, p.y2, "text");
      if (p.label === "y1") a.classList.add("win");
      if (p.label === "y2") b.classList.add("win");
      cell(tr, p.p_irm.toFixed(3), "num");
      cell(tr, p.p_grm.toFixed(3), "num");
      cell(tr, p.consistent ? "yes" : "no");
      cell(tr, p.selected ? "yes" : "no");
      cell(tr, p.label === null ? "—" : p.label, "label");
      cell(tr, gold(p));
      body.appendChild(tr);
    });
    $("count").textContent = String(rows.length);
    document.querySelectorAll("#pairs th").forEach(function (th) {
      th.classList.toggle("sorted", th.dataset.key === state.sort);
      th.classList.toggle("desc", th.dataset.key === state.sort && state.desc);
    });
    writeHash();
  }
  function iterations() {
    var its = unique(pairs.filter(function (p) { return p.arm === state.arm; })
      .map(function (p) { return String(p.iteration); }));
    fill($("iter"), its);
    if (its.indexOf(state.iter) < 0) state.iter = its.length ? its[0] : "";
    $("iter").value = state.iter;
  }

  readHash();
  var arms = unique(pairs.map(function (p) { return p.arm; }));
  fill($("arm"), arms);
  if (arms.indexOf(state.arm) < 0) state.arm = arms.length ? arms[0] : "";
  $("arm").value = state.arm;
  iterations();
  ["inconsistent", "wrong", "selected"].forEach(function (k) { $(k).checked = state[k]; });
  $("q").value = state.q;

  $("arm").addEventListener("change", function () { state.arm = this.value; iterations(); render(); });
  $("iter").addEventListener("change", function () { state.iter = this.value; render(); });
  ["inconsistent", "wrong", "selected"].forEach(function (k) {
    $(k).addEventListener("change", function () { state[k] = this.checked; render(); });
  });
  $("q").addEventListener("input", function () { state.q = this.value; render(); });
  document.querySelectorAll("#pairs th").forEach(function (th) {
    th.addEventListener("click", function () {
      var k = th.dataset.key;
      state.desc = state.sort === k ? !state.desc : false;
      state.sort = k;
      render();
    });
  });
  render();
})();
