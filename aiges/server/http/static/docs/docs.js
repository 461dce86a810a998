// Swagger UI (vendored swagger-ui-dist) on this server's /openapi.json; no validator badge, which
// would send the document to validator.swagger.io. /docs?service=NAME describes that service.
window.ui = SwaggerUIBundle({
  url: `/openapi.json${window.location.search}`, // ?service=NAME: that service's API
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  tryItOutEnabled: true,
  defaultModelsExpandDepth: 1,
});
