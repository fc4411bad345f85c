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
  // Ctrl/Cmd+Enter runs the query.
  document.addEventListener("keydown", function (ev) {
    if (ev.target && ev.target.id === "q" && ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      var f = document.getElementById("playground");
      if (f) f.requestSubmit();
    }
  });
})();
