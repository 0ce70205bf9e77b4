// GraphiQL for bff-mobile's /graphql, served from this binary (no CDN).
// The query and variables live in the page's URL (?query=…&variables=…),
// so a link opens a query ready to run; the bearer token goes in the
// Headers tab ({"Authorization": "Bearer …"}), kept in this browser's
// local storage only when "persist headers" is on in the settings.
(function () {
  'use strict';
  var parameters = new URLSearchParams(window.location.search);

  function updateUrl(name, value) {
    if (value) {
      parameters.set(name, value);
    } else {
      parameters.delete(name);
    }
    var search = parameters.toString();
    window.history.replaceState(null, '', window.location.pathname + (search ? '?' + search : ''));
  }

  var fetcher = GraphiQL.createFetcher({ url: '/graphql' });
  var root = ReactDOM.createRoot(document.getElementById('graphiql'));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      query: parameters.get('query') || undefined,
      variables: parameters.get('variables') || undefined,
      defaultHeaders: '{\n  "Authorization": "Bearer "\n}',
      defaultEditorToolsVisibility: 'headers',
      shouldPersistHeaders: true,
      onEditQuery: function (query) { updateUrl('query', query); },
      onEditVariables: function (variables) { updateUrl('variables', variables); },
    })
  );
})();
