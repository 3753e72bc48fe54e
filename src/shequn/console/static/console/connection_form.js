// The connection form shows only the fields of the chosen platform (Matrix, Telegram, WeCom).
(function () {
  "use strict";
  var FIELDS = {
    matrix: ["homeserver", "user_id", "device_id", "access_token", "hs_token"],
    telegram: ["bot_token", "webhook_secret", "mode"],
    wecom: ["corp_id", "corp_secret", "callback_token", "encoding_aes_key"],
  };
  var ALL = [].concat(FIELDS.matrix, FIELDS.telegram, FIELDS.wecom);

  function rowOf(input) {
    // the largest ancestor that holds this field only (its label, widget and help text)
    var el = input;
    while (el.parentElement && el.parentElement.tagName !== "FIELDSET" && el.parentElement.tagName !== "FORM" &&
           el.parentElement.querySelectorAll("input[name], select[name], textarea[name]").length === 1) {
      el = el.parentElement;
    }
    return el;
  }

  function apply(select) {
    var platform = select.value;
    var shown = FIELDS[platform] || [];
    ALL.forEach(function (name) {
      var input = document.querySelector("[name='" + name + "']");
      if (!input) { return; }
      var row = rowOf(input);
      var visible = shown.indexOf(name) !== -1;
      row.hidden = !visible;
      row.setAttribute("data-platform-field", visible ? "shown" : "hidden");
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var select = document.querySelector("select[name='platform']");
    var hidden = document.querySelector("input[name='platform']");
    if (select) {
      select.addEventListener("change", function () { apply(select); });
      apply(select);
    } else if (hidden) {  // an existing connection: the platform is fixed
      apply(hidden);
    }
  });
})();
