import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

/**
 * A loopback TCP proxy in front of a real server, to cut the network for real: cut() drops every open
 * connection and refuses new ones (the port is closed); restore() listens again on the same port.
 * It can also act at one precise moment of a conversation (interceptOnce): when a chunk the client sends
 * matches, it runs the test's action before (or instead of) forwarding it. With it a test injects a real
 * failure between two writes of one request: e.g. cut PostgreSQL just before Redis receives a script, or cut
 * Redis so that a script never reaches it.
 */
export class TcpProxy {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  private interceptor: { match: (chunk: string) => boolean; action: () => Promise<'forward' | 'drop'>; fired: () => void } | null = null;
  port = 0;

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {}

  async start(): Promise<number> {
    await this.listen(0);
    return this.port;
  }

  /** `url` (redis://, postgresql://) through this started proxy: its host and port, the rest unchanged. */
  via(url: string): string {
    const proxied = new URL(url);
    proxied.hostname = '127.0.0.1';
    proxied.port = String(this.port);
    return proxied.toString();
  }

  /**
   * The next client chunk that matches runs `action`; the chunk is then forwarded, or dropped (and the
   * connection with it) when the action says so. Resolves once it has fired.
   */
  interceptOnce(match: (chunk: string) => boolean, action: () => Promise<'forward' | 'drop'>): Promise<void> {
    return new Promise((resolve) => {
      this.interceptor = { match, action, fired: resolve };
    });
  }

  private listen(port: number): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(this.targetPort, this.targetHost);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => s.destroy());
      }
      // Chunks go upstream strictly in order, each after any action its predecessor triggered.
      let queue = Promise.resolve();
      client.on('data', (chunk: Buffer) => {
        queue = queue.then(async () => {
          const interceptor = this.interceptor;
          if (interceptor && interceptor.match(chunk.toString('latin1'))) {
            this.interceptor = null;
            const verdict = await interceptor.action();
            interceptor.fired();
            if (verdict === 'drop') {
              client.destroy();
              return;
            }
          }
          if (!upstream.destroyed) upstream.write(chunk);
        });
      });
      upstream.pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        this.port = (server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  /** Drops every open connection and refuses new ones (the port is closed). */
  async cut(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const s of this.sockets) s.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  async restore(): Promise<void> {
    if (!this.server) await this.listen(this.port);
  }

  async stop(): Promise<void> {
    this.interceptor = null;
    await this.cut();
  }
}
