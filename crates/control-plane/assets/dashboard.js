// Refract dashboard: copy buttons, confirmations, playground examples. No inline handlers (the
// pages' Content-Security-Policy allows only scripts from this origin).
(function () {
  "use strict";
  function copyText(el, button) {
    var text = el.textContent;
    var done = function () { button.textContent = "Copied"; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { select(el); });
    } else {
      select(el);
    }
  }
  function select(el) {
    var range = document.createRange();
    range.selectNodeContents(el);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }
  document.addEventListener("click", function (ev) {
    var t = ev.target;
    if (!(t instanceof Element)) return;
    var copy = t.closest("[data-copy]");
    if (copy) {
      var el = document.getElementById(copy.getAttribute("data-copy"));
      if (el) copyText(el, copy);
      return;
    }
    var ex = t.closest("[data-example]");
    if (ex) {
      var q = document.getElementById("q");
      if (q) { q.value = ex.getAttribute("data-example"); q.focus(); }
    }
  });
  document.addEventListener("submit", function (ev) {
    var f = ev.target;
    if (f instanceof HTMLFormElement && f.hasAttribute("data-confirm")) {
      if (!window.confirm(f.getAttribute("data-confirm"))) ev.preventDefault();
    }
  }, true);
  // A new connection is tested before it is created: Create is enabled once a test ran with
  // the current values (as "Create anyway" when it failed); changing them disables it again.
  document.addEventListener("htmx:afterSwap", function () {
    var r = document.getElementById("connection-test");
    var b = document.getElementById("create-connection");
    if (r && b) {
      b.disabled = false;
      b.textContent = r.getAttribute("data-ok") === "true" ? "Create connection" : "Create anyway (the test failed)";
    }
  });
  document.addEventListener("input", function (ev) {
    var b = document.getElementById("create-connection");
    if (b && ev.target instanceof Element && ev.target.hasAttribute("data-tested")) {
      b.disabled = true;
      b.textContent = "Create connection";
    }
  });
  // Ctrl/Cmd+Enter runs the query.
  document.addEventListener("keydown", function (ev) {
    if (ev.target && ev.target.id === "q" && ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      var f = document.getElementById("playground");
      if (f) f.requestSubmit();
    }
  });
})();
