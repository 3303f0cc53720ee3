// Sekisho portal: the only script. Everything but passkeys works without it; it only
//  - copies the enrolment token out of the link's fragment (fragments never reach a server
//    or its logs) into the form, then drops it from the address bar;
//  - asks before a form marked data-confirm is sent (delete);
//  - shows every <time datetime> in the browser's own time zone (the server writes Japan's
//    time for Japanese pages and UTC for English ones);
//  - runs the WebAuthn ceremonies for passkeys (a browser API, so it needs a script): the
//    vault makes the challenge and checks the answer; this only carries them.
"use strict";

function b64uToBytes(s) {
  var b = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4));
  var out = new Uint8Array(b.length);
  for (var i = 0; i < b.length; i++) out[i] = b.charCodeAt(i);
  return out.buffer;
}

function bytesToB64u(buf) {
  var bytes = new Uint8Array(buf), s = "";
  for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// The server's options (binary fields base64url) as the browser API wants them.
function creationOptions(o) {
  var pk = o.publicKey;
  pk.challenge = b64uToBytes(pk.challenge);
  pk.user.id = b64uToBytes(pk.user.id);
  (pk.excludeCredentials || []).forEach(function (c) { c.id = b64uToBytes(c.id); });
  return { publicKey: pk };
}

function requestOptions(o) {
  var pk = o.publicKey;
  pk.challenge = b64uToBytes(pk.challenge);
  (pk.allowCredentials || []).forEach(function (c) { c.id = b64uToBytes(c.id); });
  return { publicKey: pk };
}

function credentialJson(c) {
  var r = c.response, resp = { clientDataJSON: bytesToB64u(r.clientDataJSON) };
  if (r.attestationObject) {
    resp.attestationObject = bytesToB64u(r.attestationObject);
    if (r.getTransports) resp.transports = r.getTransports();
  } else {
    resp.authenticatorData = bytesToB64u(r.authenticatorData);
    resp.signature = bytesToB64u(r.signature);
    resp.userHandle = r.userHandle ? bytesToB64u(r.userHandle) : null;
  }
  return {
    id: c.id, rawId: bytesToB64u(c.rawId), type: c.type, response: resp,
    extensions: c.getClientExtensionResults ? c.getClientExtensionResults() : {},
  };
}

// POSTs JSON; resolves with the parsed answer, rejects with the problem's detail.
function post(path, body, csrf) {
  var headers = { "Content-Type": "application/json" };
  if (csrf) headers["X-CSRF-Token"] = csrf;
  return fetch(path, {
    method: "POST", headers: headers, credentials: "same-origin",
    body: JSON.stringify(body || {}),
  }).then(function (r) {
    return r.json().catch(function () { return {}; }).then(function (j) {
      if (!r.ok) throw new Error(j.detail || r.statusText);
      return j;
    });
  });
}

function showError(el, text) {
  el.textContent = text;
  el.hidden = false;
}

function passkeyLogin(section) {
  var err = document.getElementById("passkey-login-error");
  document.getElementById("passkey-login-button").addEventListener("click", function () {
    err.hidden = true;
    post("/api/passkeys/login/begin").then(function (c) {
      return navigator.credentials.get(requestOptions(c.options)).then(function (cred) {
        return post("/api/passkeys/login/finish", { ceremony: c.ceremony, credential: credentialJson(cred) });
      });
    }).then(function () {
      location.assign("/");
    }, function () {
      showError(err, section.getAttribute("data-failed"));
    });
  });
}

function passkeyAdd(form) {
  var err = document.getElementById("passkey-add-error");
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    err.hidden = true;
    var csrf = form.elements.csrf.value, name = form.elements.name.value;
    post("/api/step-up", { code: form.elements.code.value.replace(/\s/g, "") }, csrf).then(function () {
      return post("/api/passkeys/register/begin", {}, csrf);
    }).then(function (c) {
      return navigator.credentials.create(creationOptions(c.options)).then(function (cred) {
        return post("/api/passkeys/register/finish",
          { ceremony: c.ceremony, name: name || null, credential: credentialJson(cred) }, csrf);
      });
    }).then(function () {
      location.assign("/account?done=added");
    }, function (x) {
      showError(err, form.getAttribute("data-failed") + (x && x.message ? x.message : ""));
    });
  });
}

// "YYYY-MM-DD HH:MM ZONE" in the browser's time zone, as the server writes it in its own.
function localTime(el) {
  var d = new Date(el.getAttribute("datetime"));
  if (isNaN(d.getTime())) return;
  var two = function (n) { return (n < 10 ? "0" : "") + n; };
  var zone = "";
  try {
    var parts = new Intl.DateTimeFormat(document.documentElement.lang || undefined,
      { timeZoneName: "short" }).formatToParts(d);
    parts.forEach(function (p) { if (p.type === "timeZoneName") zone = p.value; });
  } catch (e) { /* no Intl: the offset alone */ }
  if (!zone) {
    var off = -d.getTimezoneOffset();
    zone = "UTC" + (off >= 0 ? "+" : "-") + two(Math.floor(Math.abs(off) / 60)) + ":" + two(Math.abs(off) % 60);
  }
  el.textContent = d.getFullYear() + "-" + two(d.getMonth() + 1) + "-" + two(d.getDate()) + " " +
    two(d.getHours()) + ":" + two(d.getMinutes()) + " " + zone;
  el.title = el.getAttribute("datetime");
}

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("time[datetime]").forEach(localTime);
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
  if (window.PublicKeyCredential && navigator.credentials) {
    var login = document.getElementById("passkey-login");
    if (login) { login.hidden = false; passkeyLogin(login); }
    var add = document.getElementById("passkey-add");
    if (add) { add.hidden = false; passkeyAdd(add); }
  }
});
