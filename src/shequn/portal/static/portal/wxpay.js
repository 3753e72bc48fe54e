/* WeChat Pay JSAPI: hand the server-signed prepay parameters to WeChat's own bridge (present only
   inside WeChat's browser; nothing is loaded from elsewhere), then back to the order page, which
   shows the status once WeChat Pay's notification has reached the server. */
(function () {
  var data = document.getElementById("wx-bridge");
  var back = document.getElementById("wx-back");
  if (!data || !back) return;
  var params = JSON.parse(data.textContent);
  var done = function () { window.location.href = back.getAttribute("href"); };
  var pay = function () {
    if (typeof WeixinJSBridge === "undefined") return;
    WeixinJSBridge.invoke("getBrandWCPayRequest", params, function () { done(); });
  };
  var button = document.getElementById("wx-pay");
  if (button) button.addEventListener("click", pay);
  if (typeof WeixinJSBridge === "undefined") {
    document.addEventListener("WeixinJSBridgeReady", pay, false);
  } else {
    pay();
  }
})();
