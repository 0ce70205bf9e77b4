// The partner API's reference: Swagger UI over the document this BFF serves.
window.addEventListener('load', () => {
  window.reference = SwaggerUIBundle({
    url: '/v1/openapi.json',
    dom_id: '#reference',
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: 'BaseLayout',
    docExpansion: 'list',
    defaultModelsExpandDepth: 0,
    // Requests from the page carry no credential unless the reader adds one
    // with Authorize; nothing is sent anywhere but this origin.
    persistAuthorization: false,
  });
});
