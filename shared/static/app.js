// Progressive enhancement only: every page works without this file.
"use strict";
document.querySelectorAll("textarea[maxlength], input[type=text][maxlength]").forEach(function (el) {
  var max = parseInt(el.getAttribute("maxlength"), 10);
  if (!max || max > 5000) return;
  var out = document.createElement("p");
  out.className = "fine";
  out.setAttribute("aria-live", "polite");
  function update() { out.textContent = el.value.length + " / " + max; }
  el.insertAdjacentElement("afterend", out);
  el.addEventListener("input", update);
  update();
});
