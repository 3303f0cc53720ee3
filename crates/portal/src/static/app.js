// Sekisho portal: the only script. Everything works without it; it only
//  - copies the enrolment token out of the link's fragment (fragments never reach a server
//    or its logs) into the form, then drops it from the address bar;
//  - asks before a form marked data-confirm is sent (delete).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var token = document.getElementById("token");
  if (token && !token.value && location.hash.length > 1) {
    token.value = decodeURIComponent(location.hash.slice(1));
    history.replaceState(null, "", location.pathname);
  }
  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (e) {
      if (!window.confirm(f.getAttribute("data-confirm"))) {
        e.preventDefault();
      }
    });
  });
});
