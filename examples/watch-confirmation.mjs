// Waits for the final state of one issueCoupon request and prints it as one JSON line.
//
//   TOKEN=<the user's token> node examples/watch-confirmation.mjs http://localhost:4000/graphql <requestId>
//
// Subscribing after issueCoupon answered is safe: a request already ISSUED or FAILED is replayed at once, and
// the subscription completes after its final state. Exits 0 on ISSUED, 1 on FAILED or an error.
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [url, requestId] = process.argv.slice(2);
const token = process.env.TOKEN;
if (!url || !requestId || !token) {
  console.error('usage: TOKEN=<token> node examples/watch-confirmation.mjs <http(s)://host:port/graphql> <requestId>');
  process.exit(2);
}

const client = createClient({
  url: url.replace(/^http/, 'ws'),
  // Node 20 has no global WebSocket (Node 22 and browsers have one): the `ws` package works on every Node.
  webSocketImpl: WebSocket,
  // A function, so every (re)connection sends the token as it is then: a refreshed token in a real app.
  connectionParams: () => ({ authorization: `Bearer ${process.env.TOKEN}` }),
  // graphql-ws retries a lost connection, and by default a 4403 (bad or expired token) too. This script has no way
  // to get a new token, so a 4403 ends it; an app that can refresh its token lets it retry with the new one.
  shouldRetry: (closed) => typeof closed?.code === 'number' && closed.code !== 4403,
});

const query = `subscription ($r: ID) {
  couponIssued(requestId: $r) { requestId status coupon { code issuedAt } failureReason }
}`;

let exitCode = 1;
await new Promise((resolve) => {
  client.subscribe(
    { query, variables: { r: requestId } },
    {
      next: (result) => {
        console.log(JSON.stringify(result));
        if (result.data?.couponIssued?.status === 'ISSUED') exitCode = 0;
      },
      // A refused subscription (an array of errors) or a socket that closed for good (a close event: 4403 is a
      // bad or expired token).
      error: (error) => {
        console.error(Array.isArray(error) ? JSON.stringify(error) : `closed: ${error.code ?? ''} ${error.reason ?? error}`);
        resolve();
      },
      complete: resolve,
    },
  );
});
await client.dispose();
process.exit(exitCode);
