import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print, type ExecutionResult } from 'graphql';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { signToken, type SignOptions } from '../../src/api/auth';
import { TEST_JWT_SECRET } from './environment';

export const tokenFor = (sub: string, options: SignOptions = {}) =>
  signToken(TEST_JWT_SECRET, sub, options);

export interface GraphQLResponse<T> {
  status: number;
  body: ExecutionResult<T> & { errors?: { message: string; extensions?: Record<string, unknown> }[] };
}

/** One GraphQL operation over HTTP, as a web or mobile client sends it. */
export async function httpGraphQL<T, V>(
  baseUrl: string,
  document: TypedDocumentNode<T, V> | string,
  variables?: V,
  token?: string,
): Promise<GraphQLResponse<T>> {
  const response = await fetch(`${baseUrl}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query: typeof document === 'string' ? document : print(document), variables }),
  });
  return { status: response.status, body: (await response.json()) as GraphQLResponse<T>['body'] };
}

/** Every message a subscription produced, buffered, and how it ended. */
export interface Recorded<T> {
  results: ExecutionResult<T>[];
  done: Promise<'complete' | { error: unknown }>;
  dispose(): void;
}

export function wsClient(baseUrl: string, token?: string | null, connectionParams?: Record<string, unknown>, webSocketImpl: unknown = WebSocket): Client {
  return createClient({
    url: `${baseUrl.replace(/^http/, 'ws')}/graphql`,
    webSocketImpl,
    connectionParams: connectionParams ?? (token ? { authorization: `Bearer ${token}` } : {}),
    retryAttempts: 0,
    lazy: true,
  });
}

export function record<T, V>(client: Client, document: TypedDocumentNode<T, V>, variables: V): Recorded<T> {
  const results: ExecutionResult<T>[] = [];
  let dispose: () => void = () => undefined;
  const done = new Promise<'complete' | { error: unknown }>((resolve) => {
    dispose = client.subscribe<T>(
      { query: print(document), variables: variables as Record<string, unknown> },
      {
        next: (value) => results.push(value as ExecutionResult<T>),
        error: (error) => resolve({ error }),
        complete: () => resolve('complete'),
      },
    );
  });
  return { results, done, dispose: () => dispose() };
}
