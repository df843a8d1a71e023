/* The admin's theme choice (localStorage "theme": auto, light, dark) applies here too;
   the button cycles through it like the admin's. */
(function () {
  "use strict";
  function apply(theme) {
    document.documentElement.dataset.theme = theme || "auto";
  }
  apply(window.localStorage.getItem("theme"));
  document.addEventListener("DOMContentLoaded", function () {
    var button = document.getElementById("theme-toggle");
    if (!button) { return; }
    button.hidden = false;
    button.addEventListener("click", function () {
      var order = ["auto", "light", "dark"];
      var current = window.localStorage.getItem("theme") || "auto";
      var next = order[(order.indexOf(current) + 1) % order.length];
      window.localStorage.setItem("theme", next);
      apply(next);
      button.textContent = "Theme: " + next;
    });
    button.textContent = "Theme: " + (window.localStorage.getItem("theme") || "auto");
  });
})();
