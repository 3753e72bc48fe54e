/* Telegram sign-in without Telegram's widget script: the login page links to Telegram's own sign-in
   page (redirect flow); Telegram returns here with #tgAuthResult=<base64 JSON of the signed fields>,
   which this forwards to our callback, where the hash is verified with the bot token. */
(function () {
  var box = document.getElementById("tg-login");
  if (!box) return;
  var m = /[#&]tgAuthResult=([^&]*)/.exec(window.location.hash);
  if (!m) return;
  var fields;
  try {
    var b64 = decodeURIComponent(m[1]).replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) b64 += "=";
    var bytes = atob(b64);
    var text = decodeURIComponent(Array.prototype.map.call(bytes, function (c) {
      return "%" + ("00" + c.charCodeAt(0).toString(16)).slice(-2);
    }).join(""));
    fields = JSON.parse(text);
  } catch (e) {
    fields = null;
  }
  if (!fields || typeof fields !== "object") {
    document.getElementById("tg-login-error").hidden = false;
    return;
  }
  var query = new URLSearchParams();
  Object.keys(fields).forEach(function (k) { query.append(k, String(fields[k])); });
  query.append("next", box.getAttribute("data-next") || "");
  history.replaceState(null, "", window.location.pathname + window.location.search);
  window.location.replace(box.getAttribute("data-callback") + "?" + query.toString());
})();
