// The API reference (/api/docs): Swagger UI, served by this app, reading this server's
// OpenAPI document. "Try it out" calls this same origin with the key given under Authorize.
// No inline script: the page's content security policy allows scripts from this origin only.
"use strict";
window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = window.SwaggerUIBundle({
    url: root.dataset.specUrl,
    domNode: root,
    deepLinking: true,
    validatorUrl: null,          // never send the spec to an outside validator
    persistAuthorization: false, // the key lives in this page only, not in localStorage
    displayRequestDuration: true,
    defaultModelsExpandDepth: 0,
    showExtensions: true,
    presets: [window.SwaggerUIBundle.presets.apis],
    plugins: [window.SwaggerUIBundle.plugins.DownloadUrl],
    layout: "BaseLayout"
  });
});
