// Swagger UI (vendored swagger-ui-dist) on this server's /openapi.json; no validator badge, which
// would send the document to validator.swagger.io.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  tryItOutEnabled: true,
  defaultModelsExpandDepth: 1,
});
