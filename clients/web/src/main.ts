/**
 * A browser page on Apollo Client: issueCoupon over HTTP, its confirmation over the WebSocket
 * (couponIssued(requestId), GraphQLWsLink), one ApolloLink.split between them. Bundled by esbuild into one
 * file (build.ts): no CDN. Fields may be prefilled from the query string (?api=…&token=…&promotion=…).
 */
import { ApolloClient, ApolloLink, CombinedGraphQLErrors, HttpLink, InMemoryCache, ServerError } from '@apollo/client';
import { SetContextLink } from '@apollo/client/link/context';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { getMainDefinition } from '@apollo/client/utilities';
import { createClient } from 'graphql-ws';
import { CouponIssuedDocument, IssueCouponDocument } from '../../generated/graphql';

const field = (id: string) => document.getElementById(id) as HTMLInputElement;
const params = new URLSearchParams(location.search);
for (const id of ['api', 'token', 'promotion']) field(id).value = params.get(id) ?? '';
field('api').value ||= 'http://localhost:4000/graphql'; // `npm start`'s default

/** The token as the app holds it now: read for every HTTP request and every (re)connection of the socket. */
const currentToken = () => field('token').value.trim();

function createApolloClient(api: string): ApolloClient {
  const auth = new SetContextLink((previous) => ({ headers: { ...previous.headers, authorization: `Bearer ${currentToken()}` } }));
  const http = new HttpLink({ uri: api });
  const ws = new GraphQLWsLink(
    createClient({
      url: api.replace(/^http/, 'ws'),
      connectionParams: () => ({ authorization: `Bearer ${currentToken()}` }),
      shouldRetry: () => true, // a refused connection too (a restarting server), not only a closed one
    }),
  );
  const isSubscription = ({ query }: ApolloLink.Operation) => {
    const definition = getMainDefinition(query);
    return definition.kind === 'OperationDefinition' && definition.operation === 'subscription';
  };
  return new ApolloClient({
    link: ApolloLink.split(isSubscription, ws, auth.concat(http)),
    cache: new InMemoryCache(),
    clientAwareness: { name: 'coupon-web-example', version: '1.0.0' },
  });
}

function show(status: string, detail = ''): void {
  const statusEl = document.getElementById('status') as HTMLElement;
  statusEl.textContent = status;
  statusEl.dataset.status = status;
  const item = document.createElement('li');
  item.dataset.status = status;
  item.textContent = detail ? `${status}: ${detail}` : status;
  document.getElementById('log')?.append(item);
}

/** The service's `extensions.code`, also from refusals Apollo reports by HTTP status (401, 413, 429, 503). */
function errorCode(error: unknown): string {
  if (CombinedGraphQLErrors.is(error)) return String(error.errors[0]?.extensions?.code ?? 'ERROR');
  if (ServerError.is(error)) {
    try {
      const body = JSON.parse(error.bodyText) as { errors?: { extensions?: { code?: string; retryAfterMs?: number } }[] };
      const { code, retryAfterMs } = body.errors?.[0]?.extensions ?? {};
      if (code) return retryAfterMs ? `${code}, retry in ${Math.ceil(retryAfterMs / 1000)} s` : code;
    } catch {
      // not the service's JSON (a proxy's page): the status says enough
    }
    return `HTTP ${error.statusCode}`;
  }
  return error instanceof Error ? error.message : String(error);
}

let client: ApolloClient | undefined;

document.getElementById('issue')?.addEventListener('submit', (event) => {
  event.preventDefault();
  client ??= createApolloClient(field('api').value);
  void issue(client, field('promotion').value.trim(), crypto.randomUUID());
});

/** One tap, one idempotency key: a retry of this intent would send the same key. */
async function issue(apollo: ApolloClient, promotionId: string, idempotencyKey: string): Promise<void> {
  let requestId: string;
  try {
    const { data } = await apollo.mutate({ mutation: IssueCouponDocument, variables: { promotionId, idempotencyKey } });
    const answer = data?.issueCoupon;
    if (!answer || answer.outcome !== 'QUEUED' || !answer.requestId) return show(answer?.outcome ?? 'ERROR');
    requestId = answer.requestId;
    show('QUEUED', `position ${answer.position}, ${answer.remainingStock} left`);
  } catch (error) {
    return show('ERROR', errorCode(error));
  }
  // Subscribing after the answer misses nothing: a request already final is replayed, then completes.
  apollo.subscribe({ query: CouponIssuedDocument, variables: { requestId } }).subscribe({
    next: ({ data, error }) => {
      if (error) return show('ERROR', errorCode(error));
      const issuance = data?.couponIssued;
      if (!issuance) return;
      show(issuance.status, issuance.coupon?.code ?? issuance.failureReason ?? '');
      (document.getElementById('code') as HTMLElement).textContent = issuance.coupon?.code ?? '';
    },
    error: (error) => show('ERROR', errorCode(error)),
  });
}
