import { gzipSync } from 'node:zlib';
import { css, editorWorkerService, favicon, graphqlWorker, js, jsonWorker } from '@graphql-yoga/render-graphiql/graphiql';

/**
 * The GraphiQL playground, served from the app itself: React, Monaco and its workers are inlined, so it
 * works with no internet access. Subscriptions run over graphql-ws on the same /graphql path; the
 * WebSocket's connection_init carries the Authorization header the user typed in GraphiQL's header editor.
 */

const DEFAULT_QUERY = `# Coupon issuance playground.
# 1. Get a token:   npm run token -- --sub alice          (admins: add --admin)
# 2. Open "Headers" below and set:   { "Authorization": "Bearer <token>" }
# 3. Run an operation.

query Promotions {
  promotions(first: 10) { id name status remainingStock issuedCount totalStock perUserLimit startsAt endsAt }
}

mutation Issue($promotionId: ID!) {
  issueCoupon(promotionId: $promotionId) { outcome requestId position remainingStock }
}

subscription Confirmation($requestId: ID) {
  couponIssued(requestId: $requestId) { requestId status coupon { code issuedAt } failureReason }
}
`;

// Runs in the browser. GraphiQL persists the header editor to localStorage only after a 500 ms debounce
// (tabState after 600 ms), so reading storage when the socket connects sends the previous headers (or none)
// if Run is clicked right after editing them. onEditHeaders hands us the editor's text synchronously on
// every change (typing, and tab switches, which set the editor's value); storage is only the fallback for
// headers restored at page load, before any edit.
const HEADERS_SCRIPT = `var editedHeaders = null;
options.onEditHeaders = function (text) { editedHeaders = text; };
options.connectionParams = function () {
  var headers = {};
  try {
    var text = editedHeaders;
    if (text === null) {
      var state = JSON.parse(localStorage.getItem('graphiql:tabState') || 'null');
      var tab = state && state.tabs && state.tabs[state.activeTabIndex];
      text = (tab && tab.headers) || localStorage.getItem('graphiql:headers');
    }
    headers = JSON.parse(text || '{}') || {};
  } catch (e) { headers = {}; }
  for (var name in headers) {
    if (name.toLowerCase() === 'authorization') return { authorization: String(headers[name]) };
  }
  return {};
};`;

function render(endpoint: string): string {
  const options = JSON.stringify({
    endpoint,
    title: 'Coupon issuance: GraphiQL',
    subscriptionsProtocol: 'WS',
    defaultQuery: DEFAULT_QUERY,
    shouldPersistHeaders: true,
  });
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <title>Coupon issuance: GraphiQL</title>
    <link rel="icon" href="${favicon}" />
    <style>${css}</style>
  </head>
  <body id="body" class="no-focus-outline">
    <noscript>You need to enable JavaScript to run GraphiQL.</noscript>
    <div id="root"></div>
    <script>
      function prepareBlob(source) {
        return URL.createObjectURL(new Blob([source], { type: 'application/javascript' }));
      }
      const workers = {
        editorWorkerService: prepareBlob(${JSON.stringify(editorWorkerService)}),
        json: prepareBlob(${JSON.stringify(jsonWorker)}),
        graphql: prepareBlob(${JSON.stringify(graphqlWorker)}),
      };
      self['MonacoEnvironment'] = { globalAPI: false, getWorkerUrl: function (moduleId, label) { return workers[label]; } };
      ${js};
      const options = ${options};
      ${HEADERS_SCRIPT}
      YogaGraphiQL.renderYogaGraphiQL(window.document.querySelector('#root'), options);
    </script>
  </body>
</html>`;
}

export interface GraphiQLPage {
  html: Buffer;
  gzipped: Buffer;
}

let page: GraphiQLPage | null = null;

/** Rendered once per process, on first request (about 9 MB, 2 MB gzipped). */
export function graphiqlPage(endpoint = '/graphql'): GraphiQLPage {
  if (!page) {
    const html = Buffer.from(render(endpoint));
    page = { html, gzipped: gzipSync(html) };
  }
  return page;
}
